{{/* Labels of every object. Object names are fixed (not prefixed with the release name): the
CSI driver and its cluster roles exist once per cluster. */}}
{{- define "nvmeof-csi.labels" -}}
app.kubernetes.io/name: nvmeof-csi
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Pod labels and selectors of a component: include "nvmeof-csi.selector" "controller" */}}
{{- define "nvmeof-csi.selector" -}}
app.kubernetes.io/name: nvmeof-csi
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- define "nvmeof-csi.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* A sidecar image: include "nvmeof-csi.sidecarImage" .Values.sidecars.provisioner */}}
{{- define "nvmeof-csi.sidecarImage" -}}
{{ .repository }}:{{ .tag }}
{{- end }}

{{/* imagePullPolicy of the nvmeof-csi containers, when set. */}}
{{- define "nvmeof-csi.pullPolicy" -}}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{/* The hardening of the controller pod's containers. */}}
{{- define "nvmeof-csi.restricted" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end }}
