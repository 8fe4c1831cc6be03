"""moto behaviour the sandbox corrects in its own process before serving, each where AWS documents otherwise.

- Tags on model package versions. SageMaker's AddTags, ListTags and DeleteTags take the ARN of a model
  package version, `arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>` (SageMaker API
  reference, AddTags; "Tagging model packages" in the Model Registry guide). moto 5.2 splits every ARN into
  exactly two path parts, so these calls fail there with an internal error. The model-deploy pipeline tags
  the version each stage serves (`deployed-to:<stage>`), and the model-build merge request note reads the
  production tag, so the sandbox resolves such ARNs to moto's stored package.
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_sandbox_model_package_tags"


def allow_model_package_tags() -> None:
    """Make moto's SageMaker tag model package versions (idempotent)."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend._get_resource_from_arn
    if getattr(original, _PATCHED, False):
        return

    def resolve(self: Any, arn: str) -> Any:
        resource = arn.split(":", 5)[-1]
        if resource.startswith("model-package/") and resource.count("/") == 2:
            package = self.model_packages.get(self.model_package_name_mapping.get(arn, arn))
            if package is None:
                raise ValidationError(message=f"Could not find model package with ARN {arn}")
            if package.tags is None:
                package.tags = []
            return package
        return original(self, arn)

    setattr(resolve, _PATCHED, True)
    SageMakerModelBackend._get_resource_from_arn = resolve  # type: ignore[method-assign]
