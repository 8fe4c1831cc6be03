#!/usr/bin/env bash
# Bootstrap the SageMaker + GitLab MLOps bundle into an AWS account.
#
#   GITLAB_TOKEN=... ./init.sh --region eu-west-1 --gitlab-url https://gitlab.example.com \
#       --studio-role-arn arn:aws:iam::123456789012:role/StudioUser
#   ./init.sh --help
#
# This wrapper checks the prerequisites (Python 3.11+, the AWS CLI, working credentials), finds or makes
# a Python environment with boto3, and hands over to scripts/bootstrap.py, which does the AWS work with
# boto3 (testable with stubbed clients, and honours AWS_ENDPOINT_URL like the CLI).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BOOTSTRAP="$ROOT/scripts/bootstrap.py"
OWN_VENV="$ROOT/.venv-bootstrap"

die() {
  echo "init.sh: error: $*" >&2
  exit 1
}

want_help=0
region=""
expect_region=0
for arg in "$@"; do
  if [ "$expect_region" -eq 1 ]; then
    region="$arg"
    expect_region=0
    continue
  fi
  case "$arg" in
    -h | --help) want_help=1 ;;
    --region) expect_region=1 ;;
    --region=*) region="${arg#--region=}" ;;
    --token | --token=* | --gitlab-token | --gitlab-token=*)
      die "the GitLab token is never taken from the command line (it would end up in shell history and ps);" \
        "export GITLAB_TOKEN or pipe it in with --token-stdin" ;;
  esac
done

# --- Python with boto3 and PyYAML ----------------------------------------------------------------------
python_ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; }
has_deps() { "$1" -c 'import boto3, yaml' 2>/dev/null; }

PY=""
if [ -n "${BOOTSTRAP_PYTHON:-}" ]; then
  python_ok "$BOOTSTRAP_PYTHON" && has_deps "$BOOTSTRAP_PYTHON" ||
    die "BOOTSTRAP_PYTHON=$BOOTSTRAP_PYTHON must be Python 3.11+ with boto3 and PyYAML installed"
  PY="$BOOTSTRAP_PYTHON"
else
  for candidate in "$ROOT/.venv/bin/python" "$OWN_VENV/bin/python"; do
    if [ -x "$candidate" ] && python_ok "$candidate" && has_deps "$candidate"; then
      PY="$candidate"
      break
    fi
  done
fi
if [ -z "$PY" ]; then
  command -v python3 >/dev/null 2>&1 ||
    die "python3 (3.11 or newer) is required: install it (e.g. apt-get install python3 python3-venv) and rerun"
  python_ok python3 || die "python3 is $(python3 -V 2>&1); 3.11 or newer is required"
  echo "Setting up $OWN_VENV (boto3, PyYAML) ..."
  # The same pins as the bundle's own tooling (requirements/dev.txt), so bootstrap is reproducible.
  pins=()
  while IFS= read -r line; do pins+=("$line"); done < <(grep -E '^(boto3|botocore|PyYAML)==' "$ROOT/requirements/dev.txt")
  [ "${#pins[@]}" -gt 0 ] || pins=(boto3 PyYAML)
  python3 -m venv "$OWN_VENV" >/dev/null 2>&1 ||
    die "could not create $OWN_VENV: install the venv module (apt-get install python3-venv) and rerun"
  "$OWN_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" ||
    die "could not install ${pins[*]} into $OWN_VENV: check access to PyPI (or set BOOTSTRAP_PYTHON)"
  PY="$OWN_VENV/bin/python"
fi

if [ "$want_help" -eq 1 ]; then
  exec "$PY" "$BOOTSTRAP" --help
fi

# --- AWS CLI and credentials ---------------------------------------------------------------------------
command -v aws >/dev/null 2>&1 ||
  die "the AWS CLI is required (init.sh checks your credentials with it): install it from" \
    "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html and rerun"

if [ -n "$region" ] && ! [[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]]; then
  die "--region '$region' is not a region name (like eu-west-1)"
fi

echo "Checking AWS credentials (aws sts get-caller-identity) ..."
region_args=()
[ -z "$region" ] || region_args=(--region "$region")
if ! identity_error="$(aws sts get-caller-identity "${region_args[@]}" --output text --query Account 2>&1 >/dev/null)"; then
  last_line="$(printf '%s\n' "$identity_error" | grep -v '^[[:space:]]*$' | tail -n 1)"
  die "no working AWS credentials: ${last_line:-aws sts get-caller-identity failed}." \
    "Configure them (aws configure, aws sso login or AWS_PROFILE) for the target account and rerun"
fi

exec "$PY" "$BOOTSTRAP" "$@"
