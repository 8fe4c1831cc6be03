"""What SageMaker's images and APIs accept, written down once for local runs.

IMAGE_PACKAGES: the top-level Python modules each image this pipeline uses can import, besides
the standard library: the distributions its build installs and their declared dependencies.
Sources (read with the repositories at the named commits; update the set with the image tag):

- sagemaker-scikit-learn 1.4-2 (processing): aws/sagemaker-scikit-learn-container, requirements.txt
  as of commit 8a3e8341f0c27f41febbc347d737ef66729f9735^ (the last one with docker/1.4-2/) plus its
  docker/1.4-2 Dockerfiles (mlio, sagemaker_sklearn_container); Python 3.10.
- sagemaker-xgboost 3.0-5 (training, evaluation, serving): aws/sagemaker-xgboost-container,
  requirements.txt and docker/3.0-5/{base,final}/Dockerfile.cpu as of commit cb8df91 (xgboost 3.0.5,
  numpy 2.1.0, pandas 2.2.3, pyarrow, smdebug, mlio, the container's own packages); Python 3.10.

Instance types: the enums of botocore's SageMaker service model (the API's own validation):
ProcessingInstanceType, TrainingInstanceType, ProductionVariantInstanceType, TransformInstanceType.
"""

from __future__ import annotations

from functools import cache

SKLEARN_REPOSITORY = "sagemaker-scikit-learn"
XGBOOST_REPOSITORY = "sagemaker-xgboost"

_COMMON = frozenset(
    {
        # distributions both images pin, by import name
        "boto3",
        "botocore",
        "certifi",
        "cryptography",
        "flask",
        "gevent",
        "gunicorn",
        "mms",
        "numpy",
        "pandas",
        "psutil",
        "pyarrow",
        "dateutil",
        "yaml",
        "retrying",
        "sagemaker_containers",
        "sagemaker_inference",
        "scipy",
        "sklearn",
        "setuptools",
        "pkg_resources",
        "urllib3",
        "werkzeug",
        "mlio",
        "google",  # protobuf
        # their declared dependencies
        "joblib",
        "threadpoolctl",
        "pytz",
        "tzdata",
        "s3transfer",
        "jmespath",
        "click",
        "jinja2",
        "markupsafe",
        "itsdangerous",
        "greenlet",
        "zope",
        "cffi",
        "six",
        "packaging",
    }
)

IMAGE_PACKAGES: dict[tuple[str, str], frozenset[str]] = {
    (SKLEARN_REPOSITORY, "1.4-2"): _COMMON
    | {"model_archiver", "sagemaker_training", "wheel", "sagemaker_sklearn_container"},
    (XGBOOST_REPOSITORY, "3.0-5"): _COMMON
    | {
        "xgboost",
        "PIL",
        "dask",
        "dask_cuda",
        "cuda",
        "matplotlib",
        "pynvml",
        "requests",
        "numba",
        "smdebug",
        "sagemaker_xgboost_container",
        "sagemaker_algorithm_toolkit",
        "idna",
        "charset_normalizer",
    },
}

# API field -> botocore shape whose enum lists what SageMaker accepts there.
INSTANCE_TYPE_SHAPES = {
    "processing": "ProcessingInstanceType",
    "training": "TrainingInstanceType",
    "real-time inference": "ProductionVariantInstanceType",
    "batch transform": "TransformInstanceType",
}


class ImageError(ValueError):
    """The image or instance type is not one SageMaker (or this local runner) knows; the message says which."""


def image_identity(image_uri: str) -> tuple[str, str]:
    """`<registry>/sagemaker-scikit-learn:1.4-2-cpu-py3` -> ('sagemaker-scikit-learn', '1.4-2')."""
    repository, _, tag = image_uri.rpartition(":")
    name = repository.rsplit("/", 1)[-1]
    version = tag.split("-cpu", 1)[0].split("-gpu", 1)[0]
    return name, version


def image_packages(image_uri: str) -> tuple[str, frozenset[str]]:
    """(label, importable top-level modules) of the image, or ImageError naming the images local runs know."""
    name, version = image_identity(image_uri)
    packages = IMAGE_PACKAGES.get((name, version))
    if packages is None:
        known = ", ".join(f"{n}:{v}" for n, v in sorted(IMAGE_PACKAGES))
        raise ImageError(
            f"local runs know the packages of {known}, not of {image_uri}; add the image's package list "
            "to pipelines/local/images.py (from its Dockerfile and requirements) or run on SageMaker"
        )
    return f"{name}:{version}", packages


@cache
def accepted_instance_types(kind: str) -> frozenset[str]:
    """The instance types SageMaker's API accepts for `kind` (a key of INSTANCE_TYPE_SHAPES)."""
    from botocore.loaders import Loader

    shapes = Loader().load_service_model("sagemaker", "service-2")["shapes"]
    return frozenset(shapes[INSTANCE_TYPE_SHAPES[kind]]["enum"])


def check_instance_type(kind: str, instance_type: str) -> None:
    """ImageError unless SageMaker accepts `instance_type` for `kind` jobs."""
    if instance_type not in accepted_instance_types(kind):
        family = instance_type.rsplit(".", 1)[0]
        similar = sorted(t for t in accepted_instance_types(kind) if t.startswith(family + "."))[:4]
        hint = f"; this family offers {', '.join(similar)}" if similar else ""
        raise ImageError(f"{instance_type!r} is not an instance type SageMaker accepts for {kind}{hint}")
