#!/usr/bin/env bash
# npm pack and npm publish run this first: a clean build of what the package ships, dist/lib from lib/
# alone (tsconfig.build.json) and the prebuilds (build.sh: needs root unless its cache already holds them
# for these sources). VDPA_SKIP_PREBUILD=1 packs without prebuilds, so installs compile the addon.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec 1>&2 # npm pack prints the tarball name on stdout; keep it alone there
rm -rf dist/lib
node node_modules/typescript/bin/tsc -p tsconfig.build.json
if [[ ${VDPA_SKIP_PREBUILD-} == 1 ]]; then
  rm -rf prebuilds
  echo "prepack: VDPA_SKIP_PREBUILD=1: no prebuilds in this package; installs will compile the addon" >&2
else
  bash scripts/prebuild/build.sh
fi
