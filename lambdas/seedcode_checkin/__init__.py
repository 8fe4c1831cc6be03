"""Custom resource that creates and seeds the two GitLab repositories of a SageMaker project."""
