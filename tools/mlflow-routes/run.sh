#!/bin/sh
# Re-run the extraction for one MLflow commit of a local git directory (a clone or a
# mirror of mlflow/mlflow). The tree is unpacked into a temporary directory outside the
# repository and removed afterwards; only the JSON output lands in the repository.
#
#   tools/mlflow-routes/run.sh GIT_DIR COMMIT LABEL
set -eu
if [ $# -ne 3 ]; then
	echo "usage: $0 GIT_DIR COMMIT LABEL" >&2
	exit 2
fi
git_dir=$1 commit=$2 label=$3
sha=$(git --git-dir="$git_dir" rev-parse --verify "$commit^{commit}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git --git-dir="$git_dir" archive "$sha" -- 'mlflow/*.py' 'mlflow/protos/*.proto' | tar -x -C "$tmp"
exec python3 "$(dirname "$0")/extract.py" "$tmp" "$label" --commit "$sha"
