"""The Kubernetes backend: JOB attempts as Jobs, WARM functions as Deployments (docs/kubernetes.md).

Importing this package does not import the kubernetes client; only the
backend's construction does (so the local backend's start-up is unchanged).
"""
