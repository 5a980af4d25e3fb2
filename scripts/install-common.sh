# Shared by install.sh and uninstall.sh (sourced, not run).

FAIL2BAN_FILES="action.d/syncfail2ban.py action.d/sync-action.conf filter.d/sync-filter.conf"
UNITS="syncfail2ban.service syncfail2ban-broker.service"
COMMANDS="syncfail2ban syncfail2ban-client syncfail2ban-broker"
WRAPPER_MARK="# syncfail2ban wrapper, written by make install"
MAN_PAGES="man8/syncfail2ban.8 man8/syncfail2ban-client.8 man8/syncfail2ban-broker.8 man5/syncfail2ban.conf.5"

say() { printf 'syncfail2ban: %s\n' "$*"; }
die() { printf 'syncfail2ban: %s\n' "$*" >&2; exit 1; }

# Paths are written into wrappers and units (and sed expressions): keep them plain.
check_paths() {
  for path in "$DESTDIR" "$BINDIR" "$LIBDIR" "$CONFDIR" "$FAIL2BAN_DIR" "$UNITDIR" "$MANDIR" "$DOCDIR" "$COMPLETIONDIR" "$DUMMY_LOG" "$NODE"; do
    case "$path" in
      *[\'\"\|\\\$\`[:space:]]*) die "path \"$path\" has a quote, space, |, \\, \$ or backquote; choose a plain one" ;;
    esac
  done
  for path in "$BINDIR" "$LIBDIR" "$CONFDIR" "$FAIL2BAN_DIR" "$UNITDIR" "$MANDIR" "$DOCDIR" "$COMPLETIONDIR" "$DUMMY_LOG"; do
    case "$path" in
      /*) ;;
      *) die "\"$path\" is not an absolute path" ;;
    esac
  done
}

# write_wrapper FILE SCRIPT [NODE_FLAGS]: a small sh script running $LIBDIR/dist/SCRIPT with $NODE.
write_wrapper() {
  printf '#!/bin/sh\n%s: runs the installed program with node.\nexec %s %s%s "$@"\n' \
    "$WRAPPER_MARK" "$NODE" "${3:+$3 }" "$LIBDIR/dist/$2" > "$1.tmp"
  chmod 0755 "$1.tmp"
  mv -f "$1.tmp" "$1"
}

is_our_wrapper() {
  grep -qsF "$WRAPPER_MARK" "$1"
}

# True when systemctl may be called: a real install (no DESTDIR) where systemctl exists.
# enable and disable work without a running systemd (an image being built, a container).
systemctl_here() {
  [ -z "$DESTDIR" ] && [ -n "$SYSTEMCTL" ] && command -v "$SYSTEMCTL" > /dev/null 2>&1
}

# True when, in addition, systemd runs this host: daemon-reload, start and stop work.
systemd_running() {
  systemctl_here && [ -d /run/systemd/system ]
}

# jail_files_using WORD: those of fail2ban's jail files that mention WORD (outside comments), as installed paths.
jail_files_using() {
  dir="$DESTDIR$FAIL2BAN_DIR"
  grep -Els "^[^#;]*$1" "$dir/jail.conf" "$dir/jail.local" "$dir"/jail.d/*.conf "$dir"/jail.d/*.local | sed "s|^$DESTDIR||" | tr '\n' ' ' | sed 's/ $//'
}

# used_by_jails WORD: true when fail2ban's jail config mentions WORD.
used_by_jails() { [ -n "$(jail_files_using "$1")" ]; }

# The original, installed with "pip install .", put Python console scripts at the paths of our
# commands (/usr/local/bin); a later "pip uninstall syncfail2ban" would delete whatever stands
# there then, and in PATH they come before /usr/bin. Found by those scripts, or (a real
# install) by Python's package metadata. Stops with what to do.
refuse_pip_original() {
  pip_original=
  for bindir in "$BINDIR" /usr/local/bin; do
    for command in $COMMANDS; do
      script="$DESTDIR$bindir/$command"
      if [ -f "$script" ] && ! is_our_wrapper "$script" && head -n 1 "$script" | grep -q python; then
        pip_original="$bindir/$command is its Python script"
      fi
    done
  done
  if [ -z "$pip_original" ] && [ -z "$DESTDIR" ] && command -v python3 > /dev/null 2>&1 &&
    python3 -c 'import importlib.metadata as m; m.distribution("syncfail2ban")' 2> /dev/null; then
    pip_original="python3 knows its package"
  fi
  [ -z "$pip_original" ] ||
    die "the original syncfail2ban is installed with pip ($pip_original). Remove it first, in this order: systemctl disable --now syncfail2ban; pip uninstall syncfail2ban (as root, with the pip that installed it: pip3 or python3 -m pip); then install again. Nothing was changed; docs/install.md, \"Upgrading from the original syncfail2ban\", has the details."
}

# What the package's scripts created for the admin (config.cfg), one path a line: what a
# purge may remove, and nothing the admin had before.
CREATED_LIST=/var/lib/syncfail2ban/package-created

# install_config [record]: $CONFDIR/config.cfg from the installed example, only when there
# is none, and root's alone (it may hold secrets); "record" notes it in CREATED_LIST.
install_config() {
  config="$DESTDIR$CONFDIR/config.cfg"
  if [ -e "$config" ]; then
    say "kept your $CONFDIR/config.cfg (every key is documented in $LIBDIR/etc/config.cfg)"
    return 0
  fi
  install -d -m 0755 "$DESTDIR$CONFDIR"
  install -m 0600 "$DESTDIR$LIBDIR/etc/config.cfg" "$config"
  if [ "${1:-}" = record ]; then
    install -d -m 0700 "$(dirname "$DESTDIR$CREATED_LIST")"
    echo "$CONFDIR/config.cfg" >> "$DESTDIR$CREATED_LIST"
  fi
  say "created $CONFDIR/config.cfg: edit it (mq_ip, sync_servers or broker_url, [jails])"
}

# created_by_package PATH: true when the package's install_config created PATH.
created_by_package() {
  grep -qsxF "$1" "$DESTDIR$CREATED_LIST"
}

# The original's client, where fail2ban's action lines call it, is kept as .orig (once).
move_original_client() {
  client="$DESTDIR$CONFDIR/syncfail2ban-client"
  if [ -e "$client" ] && ! is_our_wrapper "$client" && [ ! -e "$client.orig" ]; then
    mv "$client" "$client.orig"
    say "moved the previous $CONFDIR/syncfail2ban-client (the original's?) to syncfail2ban-client.orig"
  fi
  if [ -e "$DESTDIR$CONFDIR/syncfail2ban" ]; then
    say "$CONFDIR/syncfail2ban is the original's program, no longer used: delete it once you will not go back"
  fi
}

# The original's unit runs its program, /etc/syncfail2ban/syncfail2ban, which no longer works
# once its Python package is gone; and in /etc/systemd/system it overrides a unit in
# /lib/systemd/system. Stopped, disabled and moved aside as .orig, so that systemd uses ours.
ORIGINAL_UNIT=/etc/systemd/system/syncfail2ban.service
move_original_unit() {
  unit="$DESTDIR$ORIGINAL_UNIT"
  grep -Eqs '^ExecStart=[-@:+!]*/etc/syncfail2ban/syncfail2ban([[:space:]]|$)' "$unit" || return 0
  if systemd_running; then "$SYSTEMCTL" stop syncfail2ban.service 2> /dev/null || true; fi
  # What "systemctl disable" would remove: the links that enable it.
  for link in "$DESTDIR"/etc/systemd/system/*.wants/syncfail2ban.service; do
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$ORIGINAL_UNIT" ]; then rm -f "$link"; fi
  done
  mv -f "$unit" "$unit.orig"
  if systemd_running; then "$SYSTEMCTL" daemon-reload; fi
  say "moved the original's unit $ORIGINAL_UNIT (it runs /etc/syncfail2ban/syncfail2ban, the original's program) to syncfail2ban.service.orig, stopped and disabled, so that systemd uses syncfail2ban's own unit"
}

# install_fail2ban_side SHIPPED_DIR: the action and filter (an admin's changed copy is kept,
# ours put beside it as .dist), and the dummy log of the sync jails.
install_fail2ban_side() {
  for file in $FAIL2BAN_FILES; do
    dest="$DESTDIR$FAIL2BAN_DIR/$file"
    install -d -m 0755 "$(dirname "$dest")"
    if [ ! -e "$dest" ]; then
      install -m 0644 "$1/$file" "$dest"
      say "installed $FAIL2BAN_DIR/$file"
    elif cmp -s "$1/$file" "$dest"; then
      rm -f "$dest.dist"
      say "$FAIL2BAN_DIR/$file is up to date"
    else
      install -m 0644 "$1/$file" "$dest.dist"
      say "kept your $FAIL2BAN_DIR/$file, which differs from ours; ours is beside it as $(basename "$file").dist: compare them"
    fi
  done
  if [ ! -e "$DESTDIR$DUMMY_LOG" ]; then
    install -d -m 0755 "$(dirname "$DESTDIR$DUMMY_LOG")"
    install -m 0640 /dev/null "$DESTDIR$DUMMY_LOG"
    say "created $DUMMY_LOG (the sync jails' logpath)"
  fi
}

# Stops while a fail2ban jail runs sync-action and our client is where it calls it: removing
# it would make every ban log "syncfail2ban-client: not found".
refuse_while_sync_action_used() {
  if used_by_jails sync-action && is_our_wrapper "$DESTDIR$CONFDIR/syncfail2ban-client"; then
    die "refusing to uninstall: a fail2ban jail still runs sync-action, which calls $CONFDIR/syncfail2ban-client on every ban ($(jail_files_using sync-action)). Remove sync-action from those jails, run \"fail2ban-client reload\", then run this again. Nothing was removed."
  fi
}

disable_units() {
  if systemd_running; then
    "$SYSTEMCTL" disable --now $UNITS 2> /dev/null || true
  elif systemctl_here; then
    "$SYSTEMCTL" disable $UNITS 2> /dev/null || true
  fi
}

removed=0
# remove PATH WHAT: deletes PATH (file or directory) if it is there, and says so.
remove() {
  [ -e "$1" ] || [ -L "$1" ] || return 0
  rm -rf "$1"
  removed=$((removed + 1))
  say "removed $2"
}

# The agent's nftables table (nft_sync = true): with the agent gone, the bans in it would stay
# enforced and nothing would end them. Only on this machine (no DESTDIR), after the agent stopped.
remove_nft_table() {
  [ -z "$DESTDIR" ] && command -v nft > /dev/null 2>&1 || return 0
  nft list table inet syncfail2ban > /dev/null 2>&1 || return 0
  if nft delete table inet syncfail2ban; then
    removed=$((removed + 1))
    say "removed the nftables table inet syncfail2ban (the fleet's bans nft_sync enforced)"
  else
    say "could not remove the nftables table inet syncfail2ban; remove it with: nft delete table inet syncfail2ban"
  fi
}

# remove_fail2ban_side SHIPPED_DIR: the action, filter and dummy log, unless changed or in use.
remove_fail2ban_side() {
  for file in $FAIL2BAN_FILES; do
    dest="$DESTDIR$FAIL2BAN_DIR/$file"
    remove "$dest.dist" "$FAIL2BAN_DIR/$file.dist"
    [ -e "$dest" ] || continue
    name=$(basename "$file" .conf)
    if ! cmp -s "$1/$file" "$dest"; then
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
}
