"""EventBridge handler: start the model-deploy pipeline when a model package is approved."""
