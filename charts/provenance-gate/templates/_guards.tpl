{{/*
Refuses values that would install a gate that rejects every pod: an enforce mode with no
rules while unmatched images are denied.
*/}}
{{- define "provenance-gate.policyGuards" -}}
{{- $doc := include "provenance-gate.policy" . | fromJson -}}
{{- $enforced := list -}}
{{- if eq $doc.defaultMode "enforce" -}}{{- $enforced = append $enforced "defaultMode" -}}{{- end -}}
{{- range $env := $doc.environments -}}
{{- if eq $env.mode "enforce" -}}{{- $enforced = append $enforced (printf "environment %s" $env.name) -}}{{- end -}}
{{- end -}}
{{- if and $enforced (not $doc.rules) (eq $doc.unmatchedImages "deny") -}}
{{- fail (printf "\n\npolicy: %s enforce(s) but policy.rules is empty and policy.unmatchedImages is deny,\nso every pod there whose images are not in policy.exemptImages would be rejected.\nAdd policy.rules (docs/operating.md, \"Write the first policy\"), or start with policy.tier=0 (observe).\n" (join ", " $enforced)) -}}
{{- end -}}
{{- end -}}
