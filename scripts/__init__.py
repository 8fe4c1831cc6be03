"""The bundle's tooling, in two parts kept apart.

- `scripts.admin`: what a platform admin runs — package the Lambdas and seeds, render the project template,
  bootstrap an account (init.sh), re-drive dead-lettered approvals. It needs boto3 and PyYAML only: init.sh
  installs it into its own environment without the harness's dependencies.
- The development harness: `scripts.iam` (offline IAM evaluation), `scripts.sandbox` (moto as AWS, the
  local lifecycle behind `make demo`), `scripts.gitlab_standin` (the GitLab API stand-in and CI runner),
  `scripts.bench_model` and `scripts.seed_packages`.

The harness may import the admin tooling (it renders and packages what it runs); the admin tooling never
imports the harness (tests/unit/scripts/test_layout.py checks it).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
