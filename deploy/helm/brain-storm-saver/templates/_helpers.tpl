{{/*
Helpers shared by the templates: names, labels, and the RBAC rules, which are
written once here and used by both the cluster-wide and the per-namespace
bindings.
*/}}

{{/* The chart's name, unless overridden. */}}
{{- define "brain-storm-saver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: RELEASE-NAME, or RELEASE alone when it
already holds the chart's name.  Truncated to 63 characters, a DNS label.
*/}}
{{- define "brain-storm-saver.fullname" -}}
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

{{/* chart-version, as the helm.sh/chart label wants it. */}}
{{- define "brain-storm-saver.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels of every object of the release. */}}
{{- define "brain-storm-saver.labels" -}}
helm.sh/chart: {{ include "brain-storm-saver.chart" . }}
{{ include "brain-storm-saver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: brain-storm
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels that select the operator's pod; they never change across upgrades.
The component keeps them apart from the savers' pods, which the operator
labels with the same app.kubernetes.io/name.
*/}}
{{- define "brain-storm-saver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "brain-storm-saver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "brain-storm-saver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "brain-storm-saver.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's image, tag defaulting to the chart's appVersion. */}}
{{- define "brain-storm-saver.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator does in the namespaces it serves (brain_storm/operator:
kube.py and kopf's watches and events).  Each rule is needed:
tests/test_chart.py removes each in turn and watches the operator fail.
*/}}
{{- define "brain-storm-saver.operatorRules" -}}
# Watch bindings; kopf patches its bookkeeping annotations onto them.
- apiGroups: ["brain-storm.io"]
  resources: ["saverbindings"]
  verbs: ["get", "list", "watch", "patch"]
# Ready, Degraded, reachability and the rest of the status.
- apiGroups: ["brain-storm.io"]
  resources: ["saverbindings/status"]
  verbs: ["patch"]
# blockOwnerDeletion on the Deployments' ownerReferences.
- apiGroups: ["brain-storm.io"]
  resources: ["saverbindings/finalizers"]
  verbs: ["update"]
# The savers' Deployments, by server-side apply; watched for repairs.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# URLs from Secrets, and the checksum that rolls the pods when they change.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# Warnings posted as Events on the bindings.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rbac.keda }}
# KEDA ScaledObjects for bindings with spec.autoscaling.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
{{- end }}

{{/*
What kopf needs cluster-wide whatever it serves: the CRDs, to find the
SaverBinding resource, and, when it serves a list of namespaces, the
namespaces themselves.
*/}}
{{- define "brain-storm-saver.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.operator.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
