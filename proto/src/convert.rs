//! Conversions from k8s-openapi objects into snapshot messages.
