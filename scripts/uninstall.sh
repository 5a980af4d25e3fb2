#!/bin/sh
# Removes what install.sh installed; run by "make uninstall". Refuses while a fail2ban jail
# still runs sync-action (every ban would then fail with "syncfail2ban-client: not found").
# Keeps $CONFDIR/config.cfg, fail2ban files the admin changed, and fail2ban files a jail
# still uses (removing those would stop fail2ban from starting). Says only what it removed.
set -eu

. "$(dirname "$0")/install-common.sh"

check_paths

if used_by_jails sync-action && is_our_wrapper "$DESTDIR$CONFDIR/syncfail2ban-client"; then
  die "refusing to uninstall: a fail2ban jail still runs sync-action, which calls $CONFDIR/syncfail2ban-client on every ban ($(jail_files_using sync-action)). Remove sync-action from those jails, run \"fail2ban-client reload\", then run this again. Nothing was removed."
fi

removed=0
# remove PATH WHAT: deletes PATH (file or directory) if it is there, and says so.
remove() {
  [ -e "$1" ] || [ -L "$1" ] || return 0
  rm -rf "$1"
  removed=$((removed + 1))
  say "removed $2"
}

if systemd_running; then
  "$SYSTEMCTL" disable --now $UNITS 2> /dev/null || true
elif systemctl_here; then
  "$SYSTEMCTL" disable $UNITS 2> /dev/null || true
fi
for unit in $UNITS; do
  remove "$DESTDIR$UNITDIR/$unit" "$UNITDIR/$unit"
done
if systemd_running; then
  "$SYSTEMCTL" daemon-reload
fi

# fail2ban's side: compared with what was installed (the copy under $LIBDIR/etc) before that goes.
for file in $FAIL2BAN_FILES; do
  dest="$DESTDIR$FAIL2BAN_DIR/$file"
  shipped="$DESTDIR$LIBDIR/etc/fail2ban/$file"
  [ -e "$shipped" ] || shipped="etc/fail2ban/$file"
  remove "$dest.dist" "$FAIL2BAN_DIR/$file.dist"
  [ -e "$dest" ] || continue
  name=$(basename "$file" .conf)
  if ! cmp -s "$shipped" "$dest"; then
    say "kept $FAIL2BAN_DIR/$file: you changed it"
  elif used_by_jails "$name"; then
    say "kept $FAIL2BAN_DIR/$file: a jail still uses $name; remove it from your jails, reload fail2ban, then delete the file"
  else
    remove "$dest" "$FAIL2BAN_DIR/$file"
  fi
done
if [ -e "$DESTDIR$DUMMY_LOG" ]; then
  if used_by_jails "$(basename "$DUMMY_LOG")"; then
    say "kept $DUMMY_LOG: a sync jail still uses it as its logpath"
  else
    remove "$DESTDIR$DUMMY_LOG" "$DUMMY_LOG"
  fi
fi

for command in $COMMANDS; do
  if is_our_wrapper "$DESTDIR$BINDIR/$command"; then remove "$DESTDIR$BINDIR/$command" "$BINDIR/$command"; fi
done
client="$DESTDIR$CONFDIR/syncfail2ban-client"
if is_our_wrapper "$client"; then remove "$client" "$CONFDIR/syncfail2ban-client"; fi
[ ! -e "$client.orig" ] || say "the original client is still at $CONFDIR/syncfail2ban-client.orig"
remove "$DESTDIR$LIBDIR" "the program ($LIBDIR)"
for page in $MAN_PAGES; do
  remove "$DESTDIR$MANDIR/$page" "$MANDIR/$page"
done

if [ -e "$DESTDIR$CONFDIR/config.cfg" ]; then
  say "kept $CONFDIR/config.cfg; delete $CONFDIR yourself if you will not reinstall"
else
  rmdir "$DESTDIR$CONFDIR" 2> /dev/null || true
fi
[ ! -d "$DESTDIR/var/lib/syncfail2ban" ] || say "kept /var/lib/syncfail2ban (the OPNsense bridge's state); delete it yourself if unwanted"
[ "$removed" -gt 0 ] || say "nothing to remove: syncfail2ban is not installed here"
