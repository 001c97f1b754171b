{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "ttc-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, or the release name if it already contains the chart name. */}}
{{- define "ttc-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (default .Chart.Name .Values.nameOverride) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (default .Chart.Name .Values.nameOverride) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "ttc-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ttc-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ttc-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ttc-gateway.labels" -}}
helm.sh/chart: {{ include "ttc-gateway.chart" . }}
{{ include "ttc-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Name of the Secret holding the gateway's environment (API keys, Redis URL). */}}
{{- define "ttc-gateway.secretName" -}}
{{- default (include "ttc-gateway.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Redis URL for the selected mode (empty for mode none or with redis.existingSecret). */}}
{{- define "ttc-gateway.redisUrl" -}}
{{- if .Values.redis.existingSecret }}
{{- else if eq .Values.redis.mode "standalone" }}
{{- required "redis.url is required when redis.mode is standalone" .Values.redis.url }}
{{- else if eq .Values.redis.mode "sentinel" }}
{{- required "redis.sentinel.url is required when redis.mode is sentinel" .Values.redis.sentinel.url }}
{{- else if eq .Values.redis.mode "cluster" }}
{{- required "redis.cluster.url is required when redis.mode is cluster" .Values.redis.cluster.url }}
{{- end }}
{{- end }}

{{/*
Checks settings that would otherwise surface as a crash-looping or silently wrong
deployment. Renders nothing; fails the render with a message instead.
*/}}
{{- define "ttc-gateway.validate" -}}
{{- if not (or (eq .Values.redis.mode "standalone") (eq .Values.redis.mode "sentinel") (eq .Values.redis.mode "cluster") (eq .Values.redis.mode "none")) }}
{{- fail (printf "redis.mode must be standalone, sentinel, cluster or none, not %q" .Values.redis.mode) }}
{{- end }}
{{- if and (eq .Values.redis.mode "none") (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "redis.mode none (embedded SQLite ledger) supports one replica only: set replicaCount 1 and autoscaling.enabled false, or configure Redis" }}
{{- end }}
{{- if hasKey .Values.config "ledger" }}
{{- fail "set the ledger through .Values.redis, not .Values.config.ledger" }}
{{- end }}
{{- if and .Values.routerArtifact.enabled (empty .Values.routerArtifact.volume) }}
{{- fail "routerArtifact.volume is required when routerArtifact.enabled is true" }}
{{- end }}
{{- if lt (int .Values.workers) 1 }}
{{- fail "workers must be at least 1" }}
{{- end }}
{{- end }}
