"""Model-build pipelines for this SageMaker project."""
