# Sourced by the test-host tools: where they are, podman's settings for this machine, the image cache.
# shellcheck shell=bash
HERE="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/containers.conf}"
# shellcheck disable=SC2034  # read by the scripts that source this file
CACHE="${JUSTNEWS_IMAGE_CACHE:-/var/tmp/justnews-images}"
