{{/* Names, labels and the few derived values that several templates share. */}}

{{- define "tjop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name alone when it contains the chart name. */}}
{{- define "tjop.fullname" -}}
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

{{- define "tjop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tjop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tjop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tjop.labels" -}}
helm.sh/chart: {{ include "tjop.chart" . }}
{{ include "tjop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trainingjob-operator
{{- end }}

{{- define "tjop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tjop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of a cluster-scoped object: the namespace is part of it, so that the same release
name can be installed in two namespaces (such names may be longer than 63 characters). */}}
{{- define "tjop.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "tjop.fullname" .) }}
{{- end }}

{{- define "tjop.claimName" -}}
{{- default (printf "%s-shared" (include "tjop.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{- define "tjop.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "tjop.trainerImage" -}}
{{- printf "%s:%s" .Values.trainer.image.repository (default .Chart.AppVersion .Values.trainer.image.tag) }}
{{- end }}

{{/* The namespaces the operator watches, as a list; empty when it watches all of them. */}}
{{- define "tjop.watchNamespaces" -}}
{{- if not .Values.watchAllNamespaces }}
{{- $namespaces := .Values.watchNamespaces | default (list .Release.Namespace) }}
{{- toJson (uniq $namespaces) }}
{{- else }}
{{- toJson list }}
{{- end }}
{{- end }}

{{- define "tjop.bridgeNamespace" -}}
{{- if .Values.bridge.enabled }}
{{- default .Release.Namespace .Values.bridge.namespace }}
{{- end }}
{{- end }}

{{/* The "restricted" Pod Security Standard, for every pod of the chart. */}}
{{- define "tjop.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "tjop.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/* The Secret that holds the database URL: database.existingSecret, or the one the chart
makes from database.url or for its own server (postgresql.enabled; database-secret.yaml);
empty: the SQLite file on the volume. */}}
{{- define "tjop.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if or .Values.database.url .Values.postgresql.enabled }}
{{- include "tjop.fullname" . }}-database
{{- end }}
{{- end }}

{{/* The environment that tells the operator and the UI where the shared data lives; the
database URL only ever through a secretKeyRef. */}}
{{- define "tjop.sharedDataEnv" -}}
- name: SHARED_DATA_PATH
  value: {{ .Values.persistence.mountPath | quote }}
{{- with include "tjop.databaseSecretName" . }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.database.secretKey }}
{{- end }}
- name: HOME
  value: /tmp
- name: PYTHONUNBUFFERED
  value: "1"
{{- end }}

{{/* Fail early on values that the operator would reject at start-up. */}}
{{- define "tjop.validate" -}}
{{- if gt (int .Values.operator.replicas) 1 }}
{{- fail "operator.replicas must be 0 or 1: the operator runs kopf in standalone mode, without peering" }}
{{- end }}
{{- $watched := include "tjop.watchNamespaces" . | fromJsonArray }}
{{- $bridge := include "tjop.bridgeNamespace" . }}
{{- if and $watched $bridge (not (has $bridge $watched)) }}
{{- fail (printf "bridge.namespace %q is not watched (%s): add it to watchNamespaces" $bridge (join ", " $watched)) }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.operator.healthPort)) }}
{{- fail "metrics.port must differ from operator.healthPort: kopf's liveness endpoint has that port" }}
{{- end }}
{{- if and .Values.postgresql.enabled (or .Values.database.url .Values.database.existingSecret) }}
{{- fail "postgresql.enabled deploys the chart's own database: leave database.url and database.existingSecret empty, or turn postgresql.enabled off to use yours" }}
{{- end }}
{{- if not (has .Values.persistence.accessMode (list "ReadWriteOnce" "ReadWriteMany")) }}
{{- fail "persistence.accessMode must be ReadWriteOnce or ReadWriteMany: the operator, the UI and every trainer pod mount the shared volume" }}
{{- end }}
{{- end }}

{{/* What the operator may do in a namespace it watches. */}}
{{- define "tjop.namespacedRules" -}}
# TrainingJobs: watch them, add kopf's finalizer, create them from table rows (the bridge),
# set spec.cancel from the table.
- apiGroups: ["mltraining.dev"]
  resources: ["trainingjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
# The operator is the only writer of TrainingJob status.
- apiGroups: ["mltraining.dev"]
  resources: ["trainingjobs/status"]
  verbs: ["get", "patch", "update"]
# One trainer Job per TrainingJob; deleted on cancel and when the TrainingJob goes.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Kueue Workloads of queued trainer Jobs: read for Kueue's reason, spec.active for suspend.
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["get", "list", "patch"]
# Trainer pods, read-only: the termination message of a failed trainer, and the container
# states that tell a missing image or an OOM kill.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# An Event for each transition (kopf posts core/v1 Events); the Job controller's
# FailedCreate Events say why trainer pods are missing (a ResourceQuota).
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch", "list"]
{{- end }}
