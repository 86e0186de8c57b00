"""Policy evaluation: the PolicyEngine protocol and the default CEL engine over YAML bundles."""
