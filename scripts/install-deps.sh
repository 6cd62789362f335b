#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, only when missing.
set -euo pipefail
need=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v ctr >/dev/null 2>&1 || need+=(containerd)
# A Docker daemon and its client (20.10) for the docker-archive interop tests
# (`docker load`/`docker save`, tests/test_docker_daemon.py), which start a
# private dockerd of their own (a system docker is never used; where systemd
# runs, the package also enables and starts one). Checked by the daemon's
# path: a docker client alone elsewhere on PATH is not enough.
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || need+=(docker.io)
# A real HTTP proxy for the proxy tests (HTTP_PROXY/HTTPS_PROXY/CONNECT).
command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || need+=(tinyproxy)
# containerd 1.6's own content-store test suite, run against `dist serve`.
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/containerd/containerd/content/testsuite ] \
  || need+=(golang-github-containerd-containerd-dev)
# The progress display's terminal tests (a real terminal of a given size), and
# the shells whose completion scripts `dist completion` generates.
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v fish >/dev/null 2>&1 || need+=(fish)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
