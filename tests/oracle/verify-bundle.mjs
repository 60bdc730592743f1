#!/usr/bin/env node
// An independent Sigstore bundle verifier (@sigstore/verify, the verifier of
// sigstore-js and npm), used as a differential oracle for bundles minted by
// the Rust test kit: what the kit mints must verify here too, and what it
// breaks must fail here too.
//
//   node verify-bundle.mjs --trusted-root ROOT.json --bundle BUNDLE.json --digest sha256:HEX
//
// Prints one JSON verdict on stdout. Exit status: 0 verified, 1 rejected,
// 2 bad usage or unreadable input.
//
// The trust policy is the one for a timestamp-only instance such as GitHub's:
// no transparency-log entry and no SCT required, one verified RFC 3161
// timestamp required. @sigstore/verify checks the signature, the certificate
// chain and the timestamps but not what the statement is about, so the
// subject digest is compared here, as sigstore-verify does.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';

const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node verify-bundle.mjs --trusted-root FILE --bundle FILE --digest sha256:HEX\n`,
  );
  process.exit(2);
}

function readJson(path, what) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    usage(`cannot read the ${what} ${path}: ${error.message}`);
  }
}

function verdict(result, exitCode) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(exitCode);
}

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      'trusted-root': { type: 'string' },
      bundle: { type: 'string' },
      digest: { type: 'string' },
    },
    strict: true,
  }));
} catch (error) {
  usage(error.message);
}
for (const required of ['trusted-root', 'bundle', 'digest']) {
  if (!options[required]) usage(`missing --${required}`);
}
const digestMatch = /^sha256:([0-9a-f]{64})$/.exec(options.digest);
if (!digestMatch) usage(`--digest must be sha256:<64 lowercase hex>, got ${options.digest}`);
const expectedDigest = digestMatch[1];

const trustedRootJson = readJson(options['trusted-root'], 'trusted root');
const bundleJson = readJson(options.bundle, 'bundle');

try {
  const trustMaterial = toTrustMaterial(TrustedRoot.fromJSON(trustedRootJson));
  const verifier = new Verifier(trustMaterial, {
    tlogThreshold: 0,
    ctlogThreshold: 0,
    timestampThreshold: 1,
  });
  const bundle = bundleFromJSON(bundleJson);
  const signer = verifier.verify(toSignedEntity(bundle));

  if (bundle.content.$case !== 'dsseEnvelope') {
    throw Object.assign(new Error('bundle holds no DSSE envelope'), { code: 'SUBJECT_ERROR' });
  }
  const envelope = bundle.content.dsseEnvelope;
  if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw Object.assign(new Error(`payload type is ${envelope.payloadType}`), {
      code: 'SUBJECT_ERROR',
    });
  }
  const statement = JSON.parse(Buffer.from(envelope.payload).toString('utf8'));
  const subjects = Array.isArray(statement.subject) ? statement.subject : [];
  if (!subjects.some((subject) => subject?.digest?.sha256 === expectedDigest)) {
    throw Object.assign(new Error(`no subject has digest sha256:${expectedDigest}`), {
      code: 'SUBJECT_ERROR',
    });
  }

  verdict(
    {
      verified: true,
      subjectAlternativeName: signer.identity?.subjectAlternativeName ?? null,
      predicateType: statement.predicateType ?? null,
    },
    0,
  );
} catch (error) {
  verdict(
    {
      verified: false,
      error: {
        name: error?.name ?? 'Error',
        code: error?.code ?? null,
        message: error?.message ?? String(error),
        cause: error?.cause?.message ?? null,
      },
    },
    1,
  );
}
