# Shared by install.sh and uninstall.sh (sourced, not run).

FAIL2BAN_FILES="action.d/sync-action.conf filter.d/sync-filter.conf"
UNITS="syncfail2ban.service syncfail2ban-broker.service"
COMMANDS="syncfail2ban syncfail2ban-client syncfail2ban-broker"
WRAPPER_MARK="# syncfail2ban wrapper, written by make install"
MAN_PAGES="man8/syncfail2ban.8 man8/syncfail2ban-client.8 man8/syncfail2ban-broker.8 man5/syncfail2ban.conf.5"

say() { printf 'syncfail2ban: %s\n' "$*"; }
die() { printf 'syncfail2ban: %s\n' "$*" >&2; exit 1; }

# Paths are written into wrappers and units (and sed expressions): keep them plain.
check_paths() {
  for path in "$DESTDIR" "$BINDIR" "$LIBDIR" "$CONFDIR" "$FAIL2BAN_DIR" "$UNITDIR" "$MANDIR" "$DUMMY_LOG" "$NODE"; do
    case "$path" in
      *[\'\"\|\\\$\`[:space:]]*) die "path \"$path\" has a quote, space, |, \\, \$ or backquote; choose a plain one" ;;
    esac
  done
  for path in "$BINDIR" "$LIBDIR" "$CONFDIR" "$FAIL2BAN_DIR" "$UNITDIR" "$MANDIR" "$DUMMY_LOG"; do
    case "$path" in
      /*) ;;
      *) die "\"$path\" is not an absolute path" ;;
    esac
  done
}

# write_wrapper FILE SCRIPT: a small sh script running $LIBDIR/dist/SCRIPT with $NODE.
write_wrapper() {
  printf '#!/bin/sh\n%s: runs the installed program with node.\nexec %s %s "$@"\n' \
    "$WRAPPER_MARK" "$NODE" "$LIBDIR/dist/$2" > "$1.tmp"
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

# used_by_jails WORD: true when fail2ban's jail config (outside comments) mentions WORD.
used_by_jails() {
  dir="$DESTDIR$FAIL2BAN_DIR"
  grep -Eqs "^[^#;]*$1" "$dir/jail.conf" "$dir/jail.local" "$dir"/jail.d/*.conf "$dir"/jail.d/*.local
}

# jail_files_using WORD: those of fail2ban's jail files that mention WORD, as installed paths.
jail_files_using() {
  dir="$DESTDIR$FAIL2BAN_DIR"
  grep -Els "^[^#;]*$1" "$dir/jail.conf" "$dir/jail.local" "$dir"/jail.d/*.conf "$dir"/jail.d/*.local | sed "s|^$DESTDIR||" | tr '\n' ' ' | sed 's/ $//'
}
