{{/* Names and labels. */}}
{{- define "provenance-gate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "provenance-gate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "provenance-gate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "provenance-gate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "provenance-gate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "provenance-gate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: provenance-gate
{{- end -}}

{{- define "provenance-gate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "provenance-gate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "provenance-gate.policyConfigMapName" -}}
{{- default (printf "%s-policy" (include "provenance-gate.fullname" .)) .Values.policy.existingConfigMap -}}
{{- end -}}

{{- define "provenance-gate.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.secret.name is required when tls.mode is secret" .Values.tls.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "provenance-gate.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "provenance-gate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
image.repository as an exemptImages pattern: the canonical image name the policy matches
(registry host in lower case, without :443, Docker Hub as docker.io with library/ for
official images), no tag or digest, so that every tag and digest of the repository matches.
The schema refuses a repository with a tag, digest or glob characters.
*/}}
{{- define "provenance-gate.imageRepositoryPattern" -}}
{{- $repository := .Values.image.repository -}}
{{- $parts := regexSplit "/" $repository 2 -}}
{{- $first := first $parts -}}
{{- $host := "docker.io" -}}
{{- $path := $repository -}}
{{- if and (eq (len $parts) 2) (or (contains "." $first) (contains ":" $first) (eq (lower $first) "localhost")) -}}
{{- $host = lower $first | trimSuffix ":443" -}}
{{- $path = last $parts -}}
{{- end -}}
{{- if has $host (list "index.docker.io" "registry-1.docker.io") -}}{{- $host = "docker.io" -}}{{- end -}}
{{- if and (eq $host "docker.io") (not (contains "/" $path)) -}}{{- $path = printf "library/%s" $path -}}{{- end -}}
{{- printf "%s/%s" $host $path -}}
{{- end -}}

{{/* DNS names of the webhook Service, for the serving certificate. */}}
{{- define "provenance-gate.serviceDNSNames" -}}
{{- $svc := include "provenance-gate.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- toJson (dict "items" (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns))) -}}
{{- end -}}

{{/*
The effective policy document, as JSON: the tier preset, refined by explicit
policy.defaultMode / policy.environments.
*/}}
{{- define "provenance-gate.tierPresets" -}}
{{- $prod := dict "matchLabels" (dict "env" "production") -}}
{{- $staging := dict "matchLabels" (dict "env" "staging") -}}
{{- $dev := dict "matchLabels" (dict "env" "dev") -}}
{{- $presets := dict
  "0" (dict "defaultMode" "observe" "environments" (list
        (dict "name" "production" "namespaceSelector" $prod "mode" "observe")
        (dict "name" "staging" "namespaceSelector" $staging "mode" "observe")
        (dict "name" "development" "namespaceSelector" $dev "mode" "observe")))
  "1" (dict "defaultMode" "warn" "environments" (list
        (dict "name" "production" "namespaceSelector" $prod "mode" "enforce")
        (dict "name" "staging" "namespaceSelector" $staging "mode" "warn")
        (dict "name" "development" "namespaceSelector" $dev "mode" "warn")))
  "2" (dict "defaultMode" "enforce" "environments" (list
        (dict "name" "production" "namespaceSelector" $prod "mode" "enforce")
        (dict "name" "staging" "namespaceSelector" $staging "mode" "enforce")
        (dict "name" "development" "namespaceSelector" $dev "mode" "warn")))
-}}
{{- toJson $presets -}}
{{- end -}}

{{- define "provenance-gate.policy" -}}
{{- $p := .Values.policy -}}
{{- $preset := index (include "provenance-gate.tierPresets" . | fromJson) (toString (int $p.tier)) -}}
{{- $doc := dict "version" 1 -}}
{{- $_ := set $doc "defaultMode" (ternary $p.defaultMode $preset.defaultMode (hasKey $p "defaultMode")) -}}
{{- $_ := set $doc "environments" (ternary $p.environments $preset.environments (hasKey $p "environments")) -}}
{{- $exempt := $p.exemptImages | default list -}}
{{- if $p.exemptChartImage -}}
{{- $exempt = append $exempt (include "provenance-gate.imageRepositoryPattern" .) | uniq -}}
{{- end -}}
{{- $_ := set $doc "exemptImages" $exempt -}}
{{- $_ := set $doc "unmatchedImages" $p.unmatchedImages -}}
{{- $_ := set $doc "rules" $p.rules -}}
{{- if $p.breakGlass.enabled -}}
{{- $_ := set $doc "breakGlass" (dict "maxDuration" $p.breakGlass.maxDuration "approvers" $p.breakGlass.approvers) -}}
{{- end -}}
{{- $_ := set $doc "registries" $p.registries -}}
{{- with $p.revoked }}
{{- $_ := set $doc "revoked" . -}}
{{- end }}
{{- toJson $doc -}}
{{- end -}}

{{/* The policy document as policy.yaml, fields in the design's order. */}}
{{- define "provenance-gate.policyYaml" -}}
{{- $doc := include "provenance-gate.policy" . | fromJson -}}
# Rendered by the provenance-gate Helm chart (policy.tier {{ .Values.policy.tier }}).
# Edit the chart values, or this ConfigMap for a live change (the webhook reloads it; an invalid
# edit is reported and the last good policy stays in force). `helm upgrade` overwrites it.
version: 1
defaultMode: {{ $doc.defaultMode }}
{{- if $doc.environments }}
environments:
{{- range $env := $doc.environments }}
  - name: {{ $env.name | toJson }}
    namespaceSelector:
      {{- toYaml $env.namespaceSelector | nindent 6 }}
    mode: {{ $env.mode }}
{{- end }}
{{- else }}
environments: []
{{- end }}
exemptImages: {{ $doc.exemptImages | default list | toJson }}
unmatchedImages: {{ $doc.unmatchedImages }}
{{- if $doc.rules }}
rules:
{{- range $rule := $doc.rules }}
  - name: {{ $rule.name | toJson }}
    {{- range $field := list "images" "repositories" "owners" "workflows" "signerWorkflows" "allowSelfSigned" "refs" "buildConfigDigests" "triggers" "runners" "predicateTypes" "requireAttestations" "issuers" "maxAge" "environments" "instances" }}
    {{- if hasKey $rule $field }}
    {{ $field }}: {{ index $rule $field | toJson }}
    {{- end }}
    {{- end }}
{{- end }}
{{- else }}
rules: []
{{- end }}
{{- with $doc.revoked }}
revoked:
  commits: {{ .commits | default list | toJson }}
  runs: {{ .runs | default list | toJson }}
  signerDigests: {{ .signerDigests | default list | toJson }}
{{- end }}
{{- with $doc.breakGlass }}
breakGlass:
  maxDuration: {{ .maxDuration | toJson }}
  approvers:
    groups: {{ .approvers.groups | default list | toJson }}
    users: {{ .approvers.users | default list | toJson }}
{{- end }}
{{- if $doc.registries }}
registries:
{{- range $reg := $doc.registries }}
  - {{ $reg | toJson }}
{{- end }}
{{- else }}
registries: []
{{- end }}
{{- end -}}
