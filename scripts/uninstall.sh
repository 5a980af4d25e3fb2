#!/bin/sh
# Removes what install.sh installed; run by "make uninstall". Keeps $CONFDIR/config.cfg,
# fail2ban files the admin changed, and fail2ban files a jail still uses (removing those
# would stop fail2ban from starting).
set -eu

. "$(dirname "$0")/install-common.sh"

check_paths

if systemd_running; then
  "$SYSTEMCTL" disable --now $UNITS 2> /dev/null || true
elif systemctl_here; then
  "$SYSTEMCTL" disable $UNITS 2> /dev/null || true
fi
for unit in $UNITS; do
  rm -f "$DESTDIR$UNITDIR/$unit"
done
if systemd_running; then
  "$SYSTEMCTL" daemon-reload
fi
say "removed the systemd units"

# fail2ban's side: compared with what was installed (the copy under $LIBDIR/etc) before that goes.
for file in $FAIL2BAN_FILES; do
  dest="$DESTDIR$FAIL2BAN_DIR/$file"
  shipped="$DESTDIR$LIBDIR/etc/fail2ban/$file"
  [ -e "$shipped" ] || shipped="etc/fail2ban/$file"
  rm -f "$dest.dist"
  [ -e "$dest" ] || continue
  name=$(basename "$file" .conf)
  if ! cmp -s "$shipped" "$dest"; then
    say "kept $FAIL2BAN_DIR/$file: you changed it"
  elif used_by_jails "$name"; then
    say "kept $FAIL2BAN_DIR/$file: a jail still uses $name; remove it from your jails, reload fail2ban, then delete the file"
  else
    rm -f "$dest"
    say "removed $FAIL2BAN_DIR/$file"
  fi
done
if [ -e "$DESTDIR$DUMMY_LOG" ]; then
  if used_by_jails "$(basename "$DUMMY_LOG")"; then
    say "kept $DUMMY_LOG: a sync jail still uses it as its logpath"
  else
    rm -f "$DESTDIR$DUMMY_LOG"
    say "removed $DUMMY_LOG"
  fi
fi

for command in $COMMANDS; do
  if is_our_wrapper "$DESTDIR$BINDIR/$command"; then rm -f "$DESTDIR$BINDIR/$command"; fi
done
client="$DESTDIR$CONFDIR/syncfail2ban-client"
if is_our_wrapper "$client"; then rm -f "$client"; fi
[ ! -e "$client.orig" ] || say "the original client is still at $CONFDIR/syncfail2ban-client.orig"
rm -rf "$DESTDIR$LIBDIR"
say "removed the program ($LIBDIR) and its commands"

if [ -e "$DESTDIR$CONFDIR/config.cfg" ]; then
  say "kept $CONFDIR/config.cfg; delete $CONFDIR yourself if you will not reinstall"
else
  rmdir "$DESTDIR$CONFDIR" 2> /dev/null || true
fi
[ ! -d "$DESTDIR/var/lib/syncfail2ban" ] || say "kept /var/lib/syncfail2ban (the OPNsense bridge's state); delete it yourself if unwanted"
