{{/*
Failure-policy regions: which namespaces the webhook entries with failurePolicy Fail
(mode enforce) and Ignore (observe, warn) select.

The policy gives each namespace the mode of the FIRST environment whose selector matches its
labels, else defaultMode. A webhook namespaceSelector is one conjunction of label requirements,
so "environment i is the first match" (S_i and not S_1 ... and not S_i-1) is built as a union of
conjunctions, using the exact complement of a conjunction r1 and ... and rn as the DISJOINT union
  (not r1) | (r1 and not r2) | ... | (r1 and ... and not rn)
with not(In) = NotIn, not(NotIn) = In, not(Exists) = DoesNotExist and back (Kubernetes' NotIn
matches namespaces without the key, exactly the complement of In). Every conjunction is then
normalised per key (In sets intersected, NotIn removed from In, contradictions dropped), and
conjunctions of the same class that differ in one key only are merged
(k In A | k In B = k In A+B; k In A | k NotIn B = k NotIn B-A when A is within B;
k Exists | k DoesNotExist = no requirement on k).
The result is a set of disjoint conjunctions: every namespace is matched by exactly one entry
per resource, and that entry's failurePolicy is the one of its mode.
Trailing environments with the same class as defaultMode are folded into the default first.

All conjunctions start with kubernetes.io/metadata.name NotIn [release namespace, kube-system,
webhook.excludeNamespaces...]. Requirements are dicts {key, operator, values}.
Returns JSON {"fail": [[req...]...], "ignore": [[req...]...]}.
*/}}
{{- define "provenance-gate.failureRegions" -}}
{{- $doc := include "provenance-gate.policy" . | fromJson -}}
{{- $defaultFail := eq $doc.defaultMode "enforce" -}}
{{- $last := -1 -}}
{{- range $i, $env := $doc.environments -}}
{{- if ne (eq $env.mode "enforce") $defaultFail -}}{{- $last = $i -}}{{- end -}}
{{- end -}}
{{- $excluded := concat (list .Release.Namespace "kube-system") .Values.webhook.excludeNamespaces | uniq | sortAlpha -}}
{{- $remaining := list (list (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" $excluded)) -}}
{{- $fail := list -}}
{{- $ignore := list -}}
{{- range $i, $env := $doc.environments -}}
{{- if le $i $last -}}
{{- $reqs := (include "provenance-gate.selectorRequirements" $env.namespaceSelector | fromJson).items -}}
{{- $next := list -}}
{{- range $conj := $remaining -}}
{{- $matched := include "provenance-gate.normalise" (concat $conj $reqs) | fromJson -}}
{{- if not $matched.empty -}}
{{- if eq $env.mode "enforce" -}}
{{- $fail = append $fail $matched.items -}}
{{- else -}}
{{- $ignore = append $ignore $matched.items -}}
{{- end -}}
{{- end -}}
{{- $prefix := $conj -}}
{{- range $req := $reqs -}}
{{- $rest := include "provenance-gate.normalise" (append $prefix (include "provenance-gate.negate" $req | fromJson)) | fromJson -}}
{{- if not $rest.empty -}}{{- $next = append $next $rest.items -}}{{- end -}}
{{- $prefix = append $prefix $req -}}
{{- end -}}
{{- end -}}
{{- $remaining = $next -}}
{{- end -}}
{{- end -}}
{{- range $conj := $remaining -}}
{{- if $defaultFail -}}
{{- $fail = append $fail $conj -}}
{{- else -}}
{{- $ignore = append $ignore $conj -}}
{{- end -}}
{{- end -}}
{{- $fail = (include "provenance-gate.mergeAll" $fail | fromJson).items -}}
{{- $ignore = (include "provenance-gate.mergeAll" $ignore | fromJson).items -}}
{{- toJson (dict "fail" $fail "ignore" $ignore) -}}
{{- end -}}

{{/* A LabelSelector as a list of requirements: {"items": [...]}. */}}
{{- define "provenance-gate.selectorRequirements" -}}
{{- $reqs := list -}}
{{- $labels := .matchLabels | default dict -}}
{{- range $key := keys $labels | sortAlpha -}}
{{- $reqs = append $reqs (dict "key" $key "operator" "In" "values" (list (toString (index $labels $key)))) -}}
{{- end -}}
{{- range $expr := .matchExpressions | default list -}}
{{- $values := list -}}
{{- range $v := $expr.values | default list -}}{{- $values = append $values (toString $v) -}}{{- end -}}
{{- $reqs = append $reqs (dict "key" $expr.key "operator" $expr.operator "values" $values) -}}
{{- end -}}
{{- toJson (dict "items" $reqs) -}}
{{- end -}}

{{- define "provenance-gate.negate" -}}
{{- $opposite := dict "In" "NotIn" "NotIn" "In" "Exists" "DoesNotExist" "DoesNotExist" "Exists" -}}
{{- toJson (dict "key" .key "operator" (index $opposite .operator) "values" (.values | default list)) -}}
{{- end -}}

{{/*
Normalises a conjunction: per key (sorted), at most [In vals] | [DoesNotExist] |
[Exists] | [NotIn vals] | [Exists, NotIn vals]. Returns {"empty": bool, "items": [...]};
empty means no namespace can match.
*/}}
{{- define "provenance-gate.normalise" -}}
{{- $state := dict -}}
{{- range $req := . -}}
{{- $s := get $state $req.key | default (dict "exists" false "absent" false "hasIn" false "in" list "notIn" list) -}}
{{- if eq $req.operator "In" -}}
{{- if $s.hasIn -}}
{{- $keep := list -}}
{{- range $v := $s.in -}}{{- if has $v $req.values -}}{{- $keep = append $keep $v -}}{{- end -}}{{- end -}}
{{- $_ := set $s "in" $keep -}}
{{- else -}}
{{- $_ := set $s "in" (uniq $req.values) -}}
{{- $_ := set $s "hasIn" true -}}
{{- end -}}
{{- else if eq $req.operator "NotIn" -}}
{{- $_ := set $s "notIn" (concat $s.notIn $req.values | uniq) -}}
{{- else if eq $req.operator "Exists" -}}
{{- $_ := set $s "exists" true -}}
{{- else if eq $req.operator "DoesNotExist" -}}
{{- $_ := set $s "absent" true -}}
{{- else -}}
{{- fail (printf "policy.environments: unknown selector operator %q (expected In, NotIn, Exists, DoesNotExist)" $req.operator) -}}
{{- end -}}
{{- $_ := set $state $req.key $s -}}
{{- end -}}
{{- $empty := false -}}
{{- $items := list -}}
{{- range $key := keys $state | sortAlpha -}}
{{- $s := get $state $key -}}
{{- if $s.absent -}}
{{- if or $s.hasIn $s.exists -}}{{- $empty = true -}}{{- else -}}
{{- $items = append $items (dict "key" $key "operator" "DoesNotExist") -}}
{{- end -}}
{{- else if $s.hasIn -}}
{{- $vals := list -}}
{{- range $v := $s.in -}}{{- if not (has $v $s.notIn) -}}{{- $vals = append $vals $v -}}{{- end -}}{{- end -}}
{{- if $vals -}}
{{- $items = append $items (dict "key" $key "operator" "In" "values" (sortAlpha $vals)) -}}
{{- else -}}{{- $empty = true -}}{{- end -}}
{{- else -}}
{{- if $s.exists -}}{{- $items = append $items (dict "key" $key "operator" "Exists") -}}{{- end -}}
{{- if $s.notIn -}}{{- $items = append $items (dict "key" $key "operator" "NotIn" "values" (sortAlpha $s.notIn)) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "empty" $empty "items" $items) -}}
{{- end -}}

{{/* Merges the conjunctions of one class until no pair merges. {"items": [...]} */}}
{{- define "provenance-gate.mergeAll" -}}
{{- $out := . -}}
{{- range $round := until (len .) -}}
{{- $changed := false -}}
{{- $acc := list -}}
{{- range $conj := $out -}}
{{- $placed := false -}}
{{- $nextAcc := list -}}
{{- range $have := $acc -}}
{{- if $placed -}}
{{- $nextAcc = append $nextAcc $have -}}
{{- else -}}
{{- $m := include "provenance-gate.mergePair" (dict "a" $have "b" $conj) | fromJson -}}
{{- if $m.ok -}}
{{- $nextAcc = append $nextAcc $m.items -}}
{{- $placed = true -}}
{{- $changed = true -}}
{{- else -}}
{{- $nextAcc = append $nextAcc $have -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $placed -}}{{- $nextAcc = append $nextAcc $conj -}}{{- end -}}
{{- $acc = $nextAcc -}}
{{- end -}}
{{- $out = $acc -}}
{{- end -}}
{{- toJson (dict "items" $out) -}}
{{- end -}}

{{/*
Merges two normalised conjunctions that agree on every key but one, where that key is
[In A] in one and [In B] or [NotIn B] (A within B) in the other, or [Exists] in one and
[DoesNotExist] in the other. {"ok": bool, "items": [...]}
*/}}
{{- define "provenance-gate.mergePair" -}}
{{- $byKeyA := dict -}}
{{- range $r := .a -}}{{- $_ := set $byKeyA $r.key (append (get $byKeyA $r.key | default list) $r) -}}{{- end -}}
{{- $byKeyB := dict -}}
{{- range $r := .b -}}{{- $_ := set $byKeyB $r.key (append (get $byKeyB $r.key | default list) $r) -}}{{- end -}}
{{- $ok := eq (keys $byKeyA | sortAlpha | toJson) (keys $byKeyB | sortAlpha | toJson) -}}
{{- $diff := list -}}
{{- if $ok -}}
{{- range $k := keys $byKeyA | sortAlpha -}}
{{- if ne (get $byKeyA $k | toJson) (get $byKeyB $k | toJson) -}}{{- $diff = append $diff $k -}}{{- end -}}
{{- end -}}
{{- $ok = eq (len $diff) 1 -}}
{{- end -}}
{{- $merged := list -}}
{{- if $ok -}}
{{- $k := first $diff -}}
{{- $ra := get $byKeyA $k -}}
{{- $rb := get $byKeyB $k -}}
{{- $ok = and (eq (len $ra) 1) (eq (len $rb) 1) -}}
{{- if $ok -}}
{{- $x := first $ra -}}
{{- $y := first $rb -}}
{{- if eq $y.operator "In" -}}{{- $t := $x -}}{{- $x = $y -}}{{- $y = $t -}}{{- end -}}
{{- if and (eq $x.operator "In") (eq $y.operator "In") -}}
{{- $merged = list (dict "key" $k "operator" "In" "values" (concat $x.values $y.values | uniq | sortAlpha)) -}}
{{- else if and (eq $x.operator "In") (eq $y.operator "NotIn") -}}
{{- $inside := true -}}
{{- range $v := $x.values -}}{{- if not (has $v $y.values) -}}{{- $inside = false -}}{{- end -}}{{- end -}}
{{- if $inside -}}
{{- $left := list -}}
{{- range $v := $y.values -}}{{- if not (has $v $x.values) -}}{{- $left = append $left $v -}}{{- end -}}{{- end -}}
{{- if $left -}}
{{- $merged = list (dict "key" $k "operator" "NotIn" "values" (sortAlpha $left)) -}}
{{- end -}}
{{- else -}}{{- $ok = false -}}{{- end -}}
{{- else if and (eq $x.operator "Exists") (eq $y.operator "DoesNotExist") -}}
{{- /* k present | k absent: no constraint on k */ -}}
{{- else if and (eq $x.operator "DoesNotExist") (eq $y.operator "Exists") -}}
{{- else -}}{{- $ok = false -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $items := list -}}
{{- if $ok -}}
{{- range $k := keys $byKeyA | sortAlpha -}}
{{- if eq $k (first $diff) -}}
{{- $items = concat $items $merged -}}
{{- else -}}
{{- $items = concat $items (get $byKeyA $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "ok" $ok "items" $items) -}}
{{- end -}}

{{/* A conjunction as a webhook namespaceSelector (matchExpressions only). */}}
{{- define "provenance-gate.namespaceSelector" -}}
matchExpressions:
{{- range $r := . }}
  - key: {{ $r.key | quote }}
    operator: {{ $r.operator }}
    {{- if $r.values }}
    values:
      {{- range $v := $r.values }}
      - {{ $v | quote }}
      {{- end }}
    {{- end }}
{{- end }}
{{- end -}}


{{/* A conjunction as a `kubectl get -l` selector: key in (a,b), key notin (a), key, !key. */}}
{{- define "provenance-gate.kubectlSelector" -}}
{{- $terms := list -}}
{{- range $r := . -}}
{{- if eq $r.operator "In" -}}{{- $terms = append $terms (printf "%s in (%s)" $r.key (join "," $r.values)) -}}
{{- else if eq $r.operator "NotIn" -}}{{- $terms = append $terms (printf "%s notin (%s)" $r.key (join "," $r.values)) -}}
{{- else if eq $r.operator "Exists" -}}{{- $terms = append $terms $r.key -}}
{{- else -}}{{- $terms = append $terms (printf "!%s" $r.key) -}}
{{- end -}}
{{- end -}}
{{- join "," $terms -}}
{{- end -}}
