#!/usr/bin/env bash
# Builds the Debian package dist/keygate_VERSION_ARCH.deb with nfpm (pinned
# in go.mod as a tool: go tool nfpm). VERSION is 0.x.y for a tagged commit
# (tag v0.x.y) and 0.x.y~dev+COMMIT otherwise (the binary says
# 0.x.y-dev+COMMIT; "~" makes dpkg order a dev build before its release).
#
# The package holds /usr/bin/keygate, the systemd unit (contrib's, running
# as the system user keygate the package creates), /etc/keygate/keygate.env
# (0600, a conffile), an example TLS drop-in and /var/lib/keygate (0700).
#
#   scripts/build-deb.sh            # for this machine's architecture
#   GOARCH=arm64 scripts/build-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${GOARCH:-$(go env GOARCH)}
next=$(sed -n 's/^const nextRelease = "\(.*\)"$/\1/p' cmd/keygate/version.go)
commit=$(git rev-parse --short=12 HEAD)
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null) && [ -z "$(git status --porcelain --untracked-files=no)" ]; then
  version=${tag#v}
  debversion=$version
else
  suffix=$commit
  [ -n "$(git status --porcelain --untracked-files=no)" ] && suffix="$commit.dirty"
  version="$next-dev+$suffix"
  debversion="$next~dev+$suffix"
fi
stage=dist/pkg-$arch
rm -rf "$stage"
mkdir -p "$stage"
CGO_ENABLED=0 GOARCH=$arch go build -trimpath -ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
  -o "$stage/keygate" ./cmd/keygate
# The unit as packaged: the binary in /usr/bin, the package's system user
# (its files in /var/lib/keygate outlive a reinstall) instead of DynamicUser.
{
  echo "# keygate, as installed by its Debian package: settings in /etc/keygate/keygate.env,"
  echo "# state in /var/lib/keygate, TLS: /usr/share/doc/keygate/examples/keygate-tls.conf"
  echo "# (docs/operations.md). Override with systemctl edit keygate."
  sed -e '1,/^\[Unit\]$/{/^#/d}' \
      -e 's|/usr/local/bin/keygate|/usr/bin/keygate|g' \
      -e 's|^DynamicUser=yes$|User=keygate\nGroup=keygate|' \
      contrib/keygate.service
} > "$stage/keygate.service"
grep -q '^User=keygate$' "$stage/keygate.service" || { echo "build-deb: the unit has no DynamicUser=yes line to replace" >&2; exit 1; }
cat > "$stage/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd keygate >/dev/null; then
    adduser --system --group --home /var/lib/keygate --no-create-home --gecos "keygate" keygate >/dev/null 2>&1 ||
      useradd --system --user-group --home-dir /var/lib/keygate --no-create-home --shell /usr/sbin/nologin keygate
  fi
  chown keygate:keygate /var/lib/keygate
  chmod 0700 /var/lib/keygate
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
  fi
  echo "keygate: edit /etc/keygate/keygate.env, then: systemctl enable --now keygate (docs/operations.md)"
fi
SH
cat > "$stage/prerm" <<'SH'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl disable --now keygate.service >/dev/null 2>&1 || true
fi
SH
cat > "$stage/postrm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
  # The keystore, host keys and repositories stay: they are the data.
  if [ -d /var/lib/keygate ] && [ -n "$(ls -A /var/lib/keygate 2>/dev/null)" ]; then
    echo "keygate: /var/lib/keygate is kept (the keystore, host keys and repositories); remove it yourself if you mean to"
  fi
fi
SH
cat > "$stage/nfpm.yaml" <<YAML
name: keygate
arch: $arch
platform: linux
version: "$debversion"
version_schema: none
section: net
priority: optional
maintainer: keygate maintainers <keygate@example.invalid>
description: |
  SSH server for git and bastion access with a GitLab-compatible key API.
  keygate authenticates SSH keys and group certificate authorities from an
  in-memory index of a keystore managed over a GitLab v4 / GitHub v3
  compatible REST API, serves git over SSH and works as a bastion.
homepage: https://github.com/keygate/keygate
license: Apache-2.0
depends:
  - git (>= 1:2.28)
  - adduser
contents:
  - src: $stage/keygate
    dst: /usr/bin/keygate
    file_info: {mode: 0755}
  - src: $stage/keygate.service
    dst: /usr/lib/systemd/system/keygate.service
    file_info: {mode: 0644}
  - src: contrib/keygate.env
    dst: /etc/keygate/keygate.env
    type: config|noreplace
    file_info: {mode: 0600}
  - src: contrib/keygate-tls.conf
    dst: /usr/share/doc/keygate/examples/keygate-tls.conf
    file_info: {mode: 0644}
  - dst: /var/lib/keygate
    type: dir
    file_info: {mode: 0700}
scripts:
  postinstall: $stage/postinst
  preremove: $stage/prerm
  postremove: $stage/postrm
YAML
out="dist/keygate_${debversion}_${arch}.deb"
rm -f "$out"
go tool nfpm package --packager deb --config "$stage/nfpm.yaml" --target "$out" >/dev/null
echo "$out"
