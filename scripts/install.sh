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

refuse_pip_original

# 1. The program: our code bundled with the packages it runs (scripts/bundle-programs.mjs),
# put together beside the old one and swapped in whole, so that a failed or half-done
# upgrade changes nothing.
lib="$DESTDIR$LIBDIR"
say "putting the program together in $LIBDIR.new"
mkdir -p "$(dirname "$lib")"
rm -rf "$lib.new" "$lib.old"
mkdir -p "$lib.new/etc"
cp package.json "$lib.new/"
cp -R etc/config.cfg etc/fail2ban "$lib.new/etc/"
"$NODE" scripts/bundle-programs.mjs "$lib.new" || {
  rm -rf "$lib.new"
  die "bundling the programs failed (see above; run \"make\" first); nothing was changed"
}
chmod -R u=rwX,go=rX "$lib.new"
chmod 0755 "$lib.new/dist/cli/client.bundle.cjs"
[ ! -e "$lib" ] || mv "$lib" "$lib.old"
mv "$lib.new" "$lib"
rm -rf "$lib.old"
say "installed the program in $LIBDIR"

# 2. The commands, and the client path the original's fail2ban action lines call.
install -d -m 0755 "$DESTDIR$BINDIR" "$DESTDIR$CONFDIR"
# The agent runs with package.json's config.agentNodeFlags: a small young generation and the
# heap trim after bulk work (agent/memory/heap-trim.ts) keep it near 75 MB with 100,000 bans held.
write_wrapper "$DESTDIR$BINDIR/syncfail2ban" agent/main.js "$("$NODE" -p 'require("./package.json").config.agentNodeFlags')"
write_wrapper "$DESTDIR$BINDIR/syncfail2ban-broker" broker/main.js
write_wrapper "$DESTDIR$BINDIR/syncfail2ban-client" cli/client.bundle.cjs
move_original_client
write_wrapper "$DESTDIR$CONFDIR/syncfail2ban-client" cli/client.bundle.cjs
say "installed syncfail2ban, syncfail2ban-client, syncfail2ban-broker in $BINDIR, and $CONFDIR/syncfail2ban-client"

# The man pages: syncfail2ban(8), syncfail2ban-client(8), syncfail2ban-broker(8), syncfail2ban.conf(5).
for page in $MAN_PAGES; do
  install -D -m 0644 "man/$(basename "$page")" "$DESTDIR$MANDIR/$page"
done
say "installed the man pages in $MANDIR"
# Bash completion, one file under each program's name (bash-completion loads it by that name).
for command in $COMMANDS; do
  install -D -m 0644 etc/bash-completion/syncfail2ban "$DESTDIR$COMPLETIONDIR/$command"
done
say "installed bash completion in $COMPLETIONDIR"
install -d -m 0755 "$DESTDIR$DOCDIR/docs"
install -m 0644 README.md LICENSE "$DESTDIR$DOCDIR/"
install -m 0644 docs/*.md "$DESTDIR$DOCDIR/docs/"
say "installed the documentation in $DOCDIR"

# 3. The config: created once, never overwritten.
install_config

# 4. fail2ban's side: the action and filter, and the dummy log of the sync jails.
install_fail2ban_side etc/fail2ban

# 5. systemd units; the original's unit, which would run its removed program, is moved aside.
move_original_unit
install -d -m 0755 "$DESTDIR$UNITDIR"
for unit in $UNITS; do
  sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@CONFDIR@|$CONFDIR|g" "etc/systemd/$unit.in" > "$DESTDIR$UNITDIR/$unit.tmp"
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
  2. add syncfail2ban.py to each primary jail and define its sync jail in $FAIL2BAN_DIR/jail.local
     (example: $LIBDIR/etc/fail2ban/jail.local), then: fail2ban-client reload
  3. syncfail2ban --check
  4. systemctl start syncfail2ban && syncfail2ban-client status
EOF
