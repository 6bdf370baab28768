{{/* Names and labels. */}}
{{- define "flywheel.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flywheel.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (list $ "control-plane") */}}
{{- define "flywheel.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "flywheel.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "flywheel.s3Secret" -}}
{{- .Values.storage.s3.existingSecret | default "flywheel-s3" -}}
{{- end -}}

{{- define "flywheel.databaseSecret" -}}
{{- .Values.database.external.existingSecret | default (printf "%s-database" (include "flywheel.fullname" .)) -}}
{{- end -}}

{{- define "flywheel.bundledDatabase" -}}
{{- if and (not .Values.database.external.existingSecret) (not .Values.database.external.url) -}}true{{- end -}}
{{- end -}}

{{/* The platform's RayService, which the control plane applies the serving document to. */}}
{{- define "flywheel.servingName" -}}
{{- printf "%s-serving" (include "flywheel.fullname" .) -}}
{{- end -}}

{{- define "flywheel.rayCluster" -}}
{{- printf "%s-ray" (include "flywheel.fullname" .) -}}
{{- end -}}

{{/* Quantities, written exactly as flywheel.k8s.objects writes them (a test holds them equal).
     CPU cores and weights: whole numbers as "2", fractions in millis as "500m". */}}
{{- define "flywheel.cpu" -}}
{{- $m := round (mulf . 1000.0) 0 | int -}}
{{- if eq (mod $m 1000) 0 -}}{{ div $m 1000 }}{{- else -}}{{ $m }}m{{- end -}}
{{- end -}}

{{/* Memory from GiB: whole GiB as "8Gi", else MiB as "1536Mi". */}}
{{- define "flywheel.memory" -}}
{{- $mib := round (mulf . 1024.0) 0 | int -}}
{{- if eq (mod $mib 1024) 0 -}}{{ div $mib 1024 }}Gi{{- else -}}{{ $mib }}Mi{{- end -}}
{{- end -}}

{{/* Kueue-side labels of objects rendered from the teams file: as `flywheel k8s render-teams`. */}}
{{- define "flywheel.teamLabels" -}}
app.kubernetes.io/managed-by: flywheel
flywheel.dev/team: {{ . }}
{{- end -}}
