{{/* Names and labels shared by every template. */}}
{{- define "osiris.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "osiris.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "osiris.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "osiris.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "osiris.selectorLabels" -}}
app.kubernetes.io/name: {{ include "osiris.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The NATS URL every role joins: natsUrl, else the bundled NATS chart's service. */}}
{{- define "osiris.natsUrl" -}}
{{- if .Values.natsUrl }}
{{- .Values.natsUrl }}
{{- else }}
{{- printf "nats://%s-nats:4222" .Release.Name }}
{{- end }}
{{- end }}

{{/* The roles this chart knows, in start order. */}}
{{- define "osiris.roles" -}}
gateway core models tts
{{- end }}
