#!/bin/sh
# Installs syncfail2ban; run by "make install", which sets every variable below.
# Each step says what it did. Nothing of the admin's is overwritten: config.cfg is created
# only when absent, and a changed fail2ban action/filter is kept, ours put beside it as .dist.
set -eu

. "$(dirname "$0")/install-common.sh"

check_paths
[ -f dist/agent/main.js ] || die "dist/ is not built; run \"make\" first (or leave out NO_BUILD)"
[ -n "$NODE" ] && [ -x "$NODE" ] || die "node not found (NODE='$NODE'); install Node.js 20 or newer, or pass NODE=/path/to/node"
"$NODE" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
  die "$NODE is Node.js $("$NODE" --version); syncfail2ban needs 20 or newer"

# The original, installed with "pip install .", put Python console scripts at the paths of our
# commands (/usr/local/bin); a later "pip uninstall syncfail2ban" would delete whatever stands
# there then. Found by those scripts, or (a real install) by Python's package metadata.
pip_original=
for command in $COMMANDS; do
  script="$DESTDIR$BINDIR/$command"
  if [ -f "$script" ] && ! is_our_wrapper "$script" && head -n 1 "$script" | grep -q python; then
    pip_original="$BINDIR/$command is its Python script"
  fi
done
if [ -z "$pip_original" ] && [ -z "$DESTDIR" ] && command -v python3 > /dev/null 2>&1 &&
  python3 -c 'import importlib.metadata as m; m.distribution("syncfail2ban")' 2> /dev/null; then
  pip_original="python3 knows its package"
fi
if [ -n "$pip_original" ]; then
  die "the original syncfail2ban is installed with pip ($pip_original). Remove it first, in this order: systemctl disable --now syncfail2ban; pip uninstall syncfail2ban (as root, with the pip that installed it: pip3 or python3 -m pip); then run make install again. Nothing was changed; the README's \"Upgrading from the original\" section has the details."
fi

# 1. The program: compiled JavaScript and its production packages, put together beside
# the old one and swapped in whole, so that a failed or half-done upgrade changes nothing.
lib="$DESTDIR$LIBDIR"
say "putting the program together in $LIBDIR.new"
mkdir -p "$(dirname "$lib")"
rm -rf "$lib.new" "$lib.old"
mkdir -p "$lib.new/dist"
cp package.json package-lock.json README.md "$lib.new/"
for part in dist/*/; do
  [ "$part" = dist/test/ ] || cp -R "$part" "$lib.new/dist/"
done
find "$lib.new/dist" -name '*.map' -exec rm -f {} +
cp -R etc "$lib.new/etc"
if [ -n "$MODULES_FROM" ]; then
  [ -d "$MODULES_FROM" ] || die "MODULES_FROM=$MODULES_FROM is not a directory"
  "$NODE" scripts/copy-production-modules.mjs package-lock.json "$MODULES_FROM" "$lib.new/node_modules" > /dev/null
else
  (cd "$lib.new" && "$NPM" ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error) || {
    rm -rf "$lib.new"
    die "npm ci --omit=dev failed (see above; is the npm registry reachable?); nothing was changed"
  }
fi
chmod -R u=rwX,go=rX "$lib.new"
[ ! -e "$lib" ] || mv "$lib" "$lib.old"
mv "$lib.new" "$lib"
rm -rf "$lib.old"
say "installed the program in $LIBDIR"

# 2. The commands, and the client path the original's fail2ban action lines call.
install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$CONFDIR"
write_wrapper "$DESTDIR$BINDIR/syncfail2ban" agent/main.js
write_wrapper "$DESTDIR$BINDIR/syncfail2ban-broker" broker/main.js
write_wrapper "$DESTDIR$BINDIR/syncfail2ban-client" cli/client.bundle.cjs
client="$DESTDIR$CONFDIR/syncfail2ban-client"
if [ -e "$client" ] && ! is_our_wrapper "$client" && [ ! -e "$client.orig" ]; then
  mv "$client" "$client.orig"
  say "moved the previous $CONFDIR/syncfail2ban-client (the original's?) to syncfail2ban-client.orig"
fi
write_wrapper "$client" cli/client.bundle.cjs
if [ -e "$DESTDIR$CONFDIR/syncfail2ban" ]; then
  say "$CONFDIR/syncfail2ban is the original's program, no longer used: delete it once you will not go back"
fi
say "installed syncfail2ban, syncfail2ban-client, syncfail2ban-broker in $BINDIR, and $CONFDIR/syncfail2ban-client"

# The man pages: syncfail2ban(8), syncfail2ban-client(8), syncfail2ban-broker(8), syncfail2ban.conf(5).
for page in $MAN_PAGES; do
  install -D -m 0644 "man/$(basename "$page")" "$DESTDIR$MANDIR/$page"
done
say "installed the man pages in $MANDIR"

# 3. The config: created once, never overwritten. It may hold secrets, so it is root's alone.
if [ -e "$DESTDIR$CONFDIR/config.cfg" ]; then
  say "kept your $CONFDIR/config.cfg (new keys are documented in $LIBDIR/etc/config.cfg)"
else
  install -m 0600 etc/config.cfg "$DESTDIR$CONFDIR/config.cfg"
  say "created $CONFDIR/config.cfg: edit it (mq_ip, sync_servers or broker_url, [jails])"
fi

# 4. fail2ban's side: the action and filter, and the dummy log of the sync jails.
for file in $FAIL2BAN_FILES; do
  dest="$DESTDIR$FAIL2BAN_DIR/$file"
  install -d -m 0755 "$(dirname "$dest")"
  if [ ! -e "$dest" ]; then
    install -m 0644 "etc/fail2ban/$file" "$dest"
    say "installed $FAIL2BAN_DIR/$file"
  elif cmp -s "etc/fail2ban/$file" "$dest"; then
    rm -f "$dest.dist"
    say "$FAIL2BAN_DIR/$file is up to date"
  else
    install -m 0644 "etc/fail2ban/$file" "$dest.dist"
    say "kept your $FAIL2BAN_DIR/$file, which differs from ours; ours is beside it as $(basename "$file").dist: compare them"
  fi
done
if [ ! -e "$DESTDIR$DUMMY_LOG" ]; then
  install -d -m 0755 "$(dirname "$DESTDIR$DUMMY_LOG")"
  install -m 0640 /dev/null "$DESTDIR$DUMMY_LOG"
  say "created $DUMMY_LOG (the sync jails' logpath)"
fi

# 5. systemd units.
install -d -m 0755 "$DESTDIR$UNITDIR"
for unit in $UNITS; do
  sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@CONFDIR@|$CONFDIR|g" -e "s|@LIBDIR@|$LIBDIR|g" "etc/systemd/$unit.in" > "$DESTDIR$UNITDIR/$unit.tmp"
  chmod 0644 "$DESTDIR$UNITDIR/$unit.tmp"
  mv -f "$DESTDIR$UNITDIR/$unit.tmp" "$DESTDIR$UNITDIR/$unit"
done
say "installed $UNITDIR/syncfail2ban.service and syncfail2ban-broker.service"
if systemctl_here; then
  if systemd_running; then "$SYSTEMCTL" daemon-reload; fi
  "$SYSTEMCTL" enable syncfail2ban.service
  say "enabled syncfail2ban.service (it starts at boot; start it now with systemctl start syncfail2ban)"
  if systemd_running; then
    # An upgrade: running services pick up the new program.
    "$SYSTEMCTL" try-restart syncfail2ban.service syncfail2ban-broker.service
  fi
elif [ -z "$DESTDIR" ]; then
  say "no systemctl here: nothing enabled"
fi

cat <<EOF

Next:
  1. edit $CONFDIR/config.cfg
  2. add sync-action to each primary jail and define its sync jail in $FAIL2BAN_DIR/jail.local
     (example: $LIBDIR/etc/fail2ban/jail.local), then: fail2ban-client reload
  3. syncfail2ban --check
  4. systemctl start syncfail2ban && syncfail2ban-client status
EOF
