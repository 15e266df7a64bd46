#!/usr/bin/env bash
# Prints the Debian archive the host's apt sources use (a URL without a trailing slash): setup.sh fetches
# the guest kernel from it. apt itself reads the sources (one-line entries in sources.list and
# sources.list.d/*.list, deb822 paragraphs in sources.list.d/*.sources; "Enabled: no", deb-src and files
# apt ignores are left out the way apt leaves them out). An entry counts as Debian's main archive when
# its suite is the host's own release (VERSION_CODENAME in /etc/os-release) or a Debian suite alias,
# optionally with -updates or -backports; a -security archive does not carry other releases.
# The first such archive, in apt's order, wins.
#
#   apt-mirror.sh [APT_ETC_DIR]   read APT_ETC_DIR/sources.list{,.d} instead of apt's configured ones
#
# Exits 1 with a message when the sources name no such archive.
set -euo pipefail

apt_opts=(--no-release-info)
sources="/etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources}"
if (($#)); then
  [[ -d $1 ]] || { echo "apt-mirror: ERROR: no such directory: $1" >&2; exit 2; }
  apt_opts+=(-o "Dir::Etc::SourceList=$1/sources.list" -o "Dir::Etc::SourceParts=$1/sources.list.d")
  sources="$1/sources.list and $1/sources.list.d/*.{list,sources}"
fi

codename=""
if [[ -r /etc/os-release ]]; then
  codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release | tr -d '"')
fi
suites=" $codename stable oldstable oldoldstable testing unstable sid experimental "

targets=$(apt-get "${apt_opts[@]}" indextargets --format '$(TARGET_OF) $(SITE) $(RELEASE)') \
  || { echo "apt-mirror: ERROR: apt-get indextargets could not read $sources" >&2; exit 1; }
while read -r type site release; do
  [[ $type == deb && $site =~ ^https?:// ]] || continue
  base=${release%-updates}
  base=${base%-backports}
  [[ $base != *[-/]* && $suites == *" $base "* ]] || continue
  echo "${site%/}"
  exit 0
done <<<"$targets"

echo "apt-mirror: ERROR: $sources name no Debian archive: no http(s) 'deb' entry for suite" \
  "${codename:-<codename>}, stable, testing or unstable (the -security archive does not count)." \
  "Add the Debian mirror this host should use to its apt sources." >&2
exit 1
