#!/usr/bin/env bash
# Bootstrap the SageMaker + GitLab MLOps bundle into an AWS account.
#
#   GITLAB_TOKEN=... ./init.sh --region eu-west-1 --gitlab-url https://gitlab.example.com \
#       --studio-role-arn arn:aws:iam::123456789012:role/StudioUser
#   ./init.sh --help
#
# This wrapper checks the prerequisites (Python 3.11+, the AWS CLI), finds or makes a Python environment
# with boto3 and the bundle installed, and hands over to `python -m scripts.admin.bootstrap`, which checks the
# arguments, then the credentials (telling an unreachable endpoint from bad credentials), then does the AWS
# work with boto3 (testable with stubbed clients; it honours AWS_REGION, AWS_DEFAULT_REGION, AWS_PROFILE and
# AWS_ENDPOINT_URL).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
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
# The bundle itself is installed (editable) in that Python, so it imports from any directory.
has_deps() { "$1" -P -c 'import boto3, yaml, scripts.admin.bootstrap' 2>/dev/null; }

PY=""
if [ -n "${BOOTSTRAP_PYTHON:-}" ]; then
  python_ok "$BOOTSTRAP_PYTHON" && has_deps "$BOOTSTRAP_PYTHON" ||
    die "BOOTSTRAP_PYTHON=$BOOTSTRAP_PYTHON must be Python 3.11+ with boto3, PyYAML and this bundle installed (pip install -e $ROOT)"
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
  "$OWN_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --editable "$ROOT" ||
    die "could not install the bundle into $OWN_VENV: check access to PyPI (setuptools is fetched to build it)"
  PY="$OWN_VENV/bin/python"
fi

if [ "$want_help" -eq 1 ]; then
  exec "$PY" -P -m scripts.admin.bootstrap --help
fi

# --- AWS CLI --------------------------------------------------------------------------------------------
# The next steps init.sh prints are AWS CLI commands. The credentials are checked by scripts.admin.bootstrap with boto3,
# which reads AWS_REGION as well as AWS_DEFAULT_REGION (AWS CLI v1 ignores AWS_REGION).
command -v aws >/dev/null 2>&1 ||
  die "the AWS CLI is required (the next steps init.sh prints use it): install it from" \
    "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html and rerun"

region="${region:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}"
if [ -n "$region" ] && ! [[ "$region" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]]; then
  die "region '$region' (--region, AWS_REGION or AWS_DEFAULT_REGION) is not a region name (like eu-west-1)"
fi

echo "Checking the arguments, then AWS credentials ..."
exec "$PY" -P -m scripts.admin.bootstrap "$@"
