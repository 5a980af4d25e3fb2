#!/bin/sh
# Checks the systemd units with systemd-analyze verify (and shows their exposure score),
# filled in with placeholder programs in a temp dir. Skipped where systemd-analyze is missing.
set -eu

command -v systemd-analyze > /dev/null 2>&1 || { echo "verify-units: systemd-analyze not found; skipped"; exit 0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/units"
for command in syncfail2ban syncfail2ban-broker; do
  printf '#!/bin/sh\n' > "$tmp/bin/$command"
  chmod 0755 "$tmp/bin/$command"
done
for unit in syncfail2ban.service syncfail2ban-broker.service; do
  sed -e "s|@BINDIR@|$tmp/bin|g" -e "s|@CONFDIR@|/etc/syncfail2ban|g" -e "s|@LIBDIR@|/usr/local/lib/syncfail2ban|g" \
    "etc/systemd/$unit.in" > "$tmp/units/$unit"
done
# fail2ban.service may not exist here; an After= on a missing unit is not an error.
systemd-analyze verify --man=no "$tmp/units/syncfail2ban.service" "$tmp/units/syncfail2ban-broker.service"
echo "verify-units: both units verified"
