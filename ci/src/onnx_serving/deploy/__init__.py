"""The pieces of the Kubernetes and KServe manifests, one module per concern; manifests.py
assembles them into the files it renders and writes.

- pod.py: the server container every manifest runs (probes, resources, security context,
  /tmp), its names and labels;
- kubernetes.py: Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget;
- kserve.py: ServingRuntime and InferenceService;
- kustomize.py: the variant overlays and the kustomize tree committed under deploy/.

How each published variant's pods are sized is a field of its row in the variant table
(variants.PodSizing). Pure Python (PyYAML only), no dagger import.
"""
