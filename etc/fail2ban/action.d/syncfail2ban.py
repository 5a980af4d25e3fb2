# syncfail2ban: publish this jail's bans and unbans to the other servers, from inside
# fail2ban-server: no process per ban. Add it to a primary jail next to its usual action,
# e.g. in jail.local:
#   action = %(action_)s
#            syncfail2ban.py
# Options (all optional): config (the agent's config file, default
# /etc/syncfail2ban/config.cfg), socket (default: where that config makes the agent listen,
# /run/syncfail2ban/action.sock unless action_socket or control_socket says otherwise),
# queue_size (events kept while the agent does not take them, default 10000).
#
# Each ban, unban and prolonged ban is queued in memory and handed, from a thread of its
# own, to the local syncfail2ban agent over its action socket; the agent publishes it.
# The jail never waits: when the agent is down, what does not fit in the queue is dropped
# and counted (one line in fail2ban's log per outage), and the queue is sent once the agent
# answers again. The wire format is one line per event (see the agent's
# agent/publishing/action-line.ts):  <ban|prolong|unban> <jail> <address> <time> <bantime> <bancount>
# and the agent answers each line with "ok" or "refused <reason>: <detail>".
# Its counters: fail2ban-client get <jail> action syncfail2ban <sent|queued|dropped|refused|invalid>
# "syncfail2ban-client -f <jail>" reads the jail's bans through it (its listing(): several times
# faster than fail2ban's own listing with times).

import collections
import configparser
import itertools
import os
import re
import socket as sockets
import threading
import time

from fail2ban.server.action import ActionBase

DEFAULT_CONFIG = '/etc/syncfail2ban/config.cfg'
DEFAULT_SOCKET = '/run/syncfail2ban/action.sock'
DEFAULT_QUEUE_SIZE = 10000
# As the agent's JAIL_NAME: what a jail name may be in an MQTT topic.
JAIL_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
# The characters of an IPv4/IPv6 address or network; the agent checks the rest. fail2ban
# stores any string as a "ban": nothing with a space or a line break may reach the wire
# (fullmatch: "$" alone lets a final line break through).
ADDRESS = re.compile(r'^[0-9A-Fa-f:.]{2,45}(/[0-9]{1,3})?$')
# What a listing line must not carry of an entry that is no address.
CONTROL = re.compile(r'[\x00-\x1f\x7f]')
# Lines written to the agent at once (it answers each).
BATCH = 1000
# While events keep coming (a burst of bans), the sender waits for the burst in steps of
# COALESCE_STEP_S, up to COALESCE_MAX_S: a few large batches instead of one per ban, whose
# round trips and thread switches would slow the thread that bans. A lone ban waits one step.
COALESCE_STEP_S = 0.005
COALESCE_MAX_S = 0.05
# Waits between attempts to reach the agent, growing while it does not answer.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0
# An outage is logged once it lasted this long (an agent reload takes less), or at the first drop.
OUTAGE_LOGGED_AFTER_S = 3.0
# At fail2ban's stop, how long the queue may take to reach the agent.
STOP_DRAIN_S = 2.0
# The ban ticket behind fail2ban's lazy action info (fail2ban 0.10 to 1.1). Reading it directly
# costs a tenth of the info's lazy lookups: the difference between this action adding a few
# percent to fail2ban's time per ban and adding half of it.
TICKET = '_ActionInfo__ticket'


class Action(ActionBase):
	"""Publishes the jail's bans, unbans and prolonged bans through the local syncfail2ban agent."""

	# Bans restored from fail2ban's database at its start were published when they were made.
	norestored = True
	# fail2ban rebans through actions whose epoch grew (a shell action's repair); ours never does.
	banEpoch = 0

	def __init__(self, jail, name, config=DEFAULT_CONFIG, socket=None, queue_size=str(DEFAULT_QUEUE_SIZE)):
		super(Action, self).__init__(jail, name)
		# Events as (kind, address, time, bantime or None for the jail's, bancount). Appended
		# by the threads fail2ban bans from, taken by the sender: deque's ends are thread-safe.
		self._queue = collections.deque()
		self._wake = threading.Event()
		# The sender waits for _wake: producers set it then only, sparing them a lock per ban.
		self._idle = False
		# Guards the outage's state, shared by the producers (drops) and the sender.
		self._lock = threading.Lock()
		self._thread = None
		self._connection = None
		self._reconnect = False
		self._stopping = False
		self.sent = 0
		self.dropped = 0
		self.refused = 0
		self.invalid = 0
		self._outage_since = None
		self._outage_logged = False
		self._dropped_in_outage = 0
		self._refusal_reasons_logged = set()
		self._last_error = None
		self._configure(config, socket, queue_size)

	# fail2ban's reload: without these two, it would replace this action by a new one that never starts.
	def clearAllParams(self):
		pass

	def reload(self, config=DEFAULT_CONFIG, socket=None, queue_size=str(DEFAULT_QUEUE_SIZE)):
		self._configure(config, socket, queue_size)
		self._reconnect = True
		self.start()

	def _configure(self, config, socket, queue_size):
		self.syncfail2ban_config = config
		try:
			self.queue_size = int(queue_size)
			if self.queue_size < 1:
				raise ValueError
		except ValueError:
			self.queue_size = DEFAULT_QUEUE_SIZE
			self._logSys.error("syncfail2ban: queue_size=%r of jail %s is not a positive number; using %d", queue_size, self._jail.name, DEFAULT_QUEUE_SIZE)
		self.refused_reason = None
		self.syncfail2ban_socket = socket or DEFAULT_SOCKET
		self._timeout_s = 10.0
		jail = self._jail.name
		if not JAIL_NAME.match(jail):
			self._refuse("the jail name %r cannot be published (letters, digits, '-', '_' and '.', at most 64)" % jail, "rename the jail")
			return
		try:
			settings, jails = read_agent_config(config)
		except (OSError, configparser.Error) as error:
			self._refuse("cannot read the syncfail2ban config %s (%s)" % (config, error),
				"install and configure syncfail2ban, or give its config file: syncfail2ban.py[config=/path/to/config.cfg]")
			return
		if socket is None:
			self.syncfail2ban_socket = agent_socket(settings)
		try:
			self._timeout_s = float(settings.get('connection_timeout', '10'))
		except ValueError:
			pass
		primaries = [primary for primary, sync in jails.items() if sync == jail]
		if primaries:
			self._refuse(
				"%s is a sync jail in %s ([jails] %s = %s): publishing its bans would send every ban applied here back to the fleet, a loop"
				% (jail, config, primaries[0], jail),
				"remove syncfail2ban.py from the action list of [%s] in jail.local, then run \"fail2ban-client reload\"" % jail)

	def _refuse(self, what, fix):
		self.refused_reason = "%s; fix: %s" % (what, fix)

	def start(self):
		if self.refused_reason:
			self._logSys.error("syncfail2ban: the action of jail %s does not publish anything: %s", self._jail.name, self.refused_reason)
			return
		self._stopping = False
		if self._thread is None or not self._thread.is_alive():
			self._thread = threading.Thread(target=self._run, name="syncfail2ban-%s" % self._jail.name, daemon=True)
			self._thread.start()

	def stop(self):
		thread = self._thread
		if thread is None:
			return
		self._stopping = True
		self._wake.set()
		thread.join(STOP_DRAIN_S + 1)
		left = len(self._queue)
		self._queue.clear()
		self._close()
		if left:
			self._logSys.warning("syncfail2ban: jail %s stopped with %d event(s) the agent on %s did not take; run \"syncfail2ban-client -f %s\" once it runs",
				self._jail.name, left, self.syncfail2ban_socket, self._jail.name)

	def ban(self, aInfo):
		self._put('ban', aInfo)

	def reban(self, aInfo):
		self._put('ban', aInfo)

	@property
	def _prolongable(self):
		return True

	def prolong(self, aInfo):
		self._put('prolong', aInfo)

	def unban(self, aInfo):
		self._put('unban', aInfo)

	def flush(self):
		# fail2ban stopping (or "unban --all") is not a wave of unbans to publish: peers keep
		# the bans until the origin's unban or their end, as with the shell action.
		return True

	@property
	def queued(self):
		return len(self._queue)

	def listing(self):
		"""The jail's bans for "syncfail2ban-client -f" (fail2ban-client set <jail> action
		syncfail2ban listing): one line per ban, "<address> <start> <bantime>", the start in
		seconds since the epoch, the bantime in seconds (-1: for good); "! <entry>" for a ban that
		is no address (cut, its control characters as "?"). fail2ban's own listing with times
		formats two local times per ban and sorts them: 0.7 to 0.8 s for 100,000 bans, this 0.2 s."""
		manager = self._jail.actions.banManager
		default = manager.getBanTime()
		lines = []
		for ticket in manager:
			address, valid = ban_address(ticket.getID())
			if valid:
				lines.append('%s %.3f %d' % (address, ticket.getTime(), ticket.getBanTime(default)))
			else:
				lines.append('! %s' % CONTROL.sub('?', str(address))[:100])
		return '\n'.join(lines)

	def _put(self, kind, aInfo):
		"""On the thread that bans: as little as possible, never a wait."""
		if self.refused_reason:
			return
		ticket = getattr(aInfo, TICKET, None)
		if ticket is not None:
			event = (kind, ticket.getIP(), ticket.getTime(), ticket.getBanTime(), ticket.getBanCount())
		else:
			event = (kind, aInfo['ip'], aInfo['time'], aInfo['bantime'], aInfo['bancount'])
		queue = self._queue
		if len(queue) >= self.queue_size:
			self._drop()
			return
		queue.append(event)
		if self._idle:
			self._wake.set()

	def _drop(self):
		with self._lock:
			self.dropped += 1
			self._dropped_in_outage += 1
			if self._dropped_in_outage > 1:
				return
			self._outage_since = self._outage_since or time.time()
			self._outage_logged = True
		self._logSys.warning(
			"syncfail2ban: the agent on %s does not take events fast enough and the queue of jail %s is full (%d): dropping what does not fit, counted, until it catches up",
			self.syncfail2ban_socket, self._jail.name, self.queue_size)

	def _run(self):
		queue = self._queue
		wait_s = RETRY_FIRST_S
		stop_by = None
		while True:
			if not queue:
				if self._stopping:
					return
				self._idle = True
				if not queue and not self._stopping:
					self._wake.wait()
				self._idle = False
				self._wake.clear()
				continue
			if self._stopping:
				stop_by = stop_by or time.time() + STOP_DRAIN_S
				if time.time() >= stop_by:
					return
			else:
				self._await_burst()
			batch = list(itertools.islice(queue, BATCH))
			if self._reconnect:
				self._reconnect = False
				self._close()
			try:
				replies = self._deliver([line for line in map(self._line, batch) if line])
			except Exception as error:  # OSError: the agent is away; anything else must not end the thread either
				self._close()
				if not isinstance(error, OSError) and repr(error) != self._last_error:
					self._logSys.error("syncfail2ban: jail %s could not hand events to the agent: %r", self._jail.name, error)
				self._last_error = repr(error)
				self._note_outage(error)
				if not self._stopping:
					self._wake.wait(wait_s)
					self._wake.clear()
				wait_s = min(wait_s * 2, RETRY_MAX_S)
				continue
			wait_s = RETRY_FIRST_S
			for _ in batch:
				queue.popleft()
			self._note_replies(replies)
			self._note_back()

	def _await_burst(self):
		queue = self._queue
		seen = len(queue)
		until = time.monotonic() + COALESCE_MAX_S
		while seen < BATCH and time.monotonic() < until:
			time.sleep(COALESCE_STEP_S)
			if len(queue) == seen:
				return
			seen = len(queue)

	def _line(self, event):
		"""The event as a line of the wire format, or None for a "ban" that is no address."""
		kind, ip, at, bantime, bancount = event
		address, valid = ban_address(ip)
		try:
			if not valid:
				raise ValueError("not an IP address or network")
			if bantime is None:
				bantime = self._jail.actions.getBanTime()
			return "%s %s %s %.3f %d %d\n" % (kind, self._jail.name, address, at, bantime, bancount)
		except (TypeError, ValueError) as error:
			self.invalid += 1
			if self.invalid == 1:
				self._logSys.warning("syncfail2ban: jail %s banned %r (%s); not published, nor are others like it (counted: invalid)", self._jail.name, address, error)
			return None

	def _deliver(self, lines):
		"""Writes the lines and reads the agent's answer to each; raises OSError when the agent cannot be reached."""
		if not lines:
			return []
		if self._connection is None:
			connection = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
			connection.settimeout(self._timeout_s)
			try:
				connection.connect(self.syncfail2ban_socket)
			except OSError:
				connection.close()
				raise
			self._connection = connection
		self._connection.sendall(''.join(lines).encode('ascii'))
		received = []
		answered = 0
		while answered < len(lines):
			chunk = self._connection.recv(65536)
			if not chunk:
				raise ConnectionResetError("the agent closed the connection")
			received.append(chunk)
			answered += chunk.count(b'\n')
		return b''.join(received).split(b'\n')[:-1]

	def _close(self):
		connection, self._connection = self._connection, None
		if connection is not None:
			try:
				connection.close()
			except OSError:
				pass

	def _note_replies(self, replies):
		ok = 0
		for reply in replies:
			if reply == b'ok':
				ok += 1
				continue
			self.refused += 1
			text = reply.decode('utf-8', 'replace')
			reason = text.split(':', 1)[0]
			if reason not in self._refusal_reasons_logged:
				self._refusal_reasons_logged.add(reason)
				self._logSys.error("syncfail2ban: the agent refused an event of jail %s: %s (further refusals for this reason are counted, not logged)", self._jail.name, text)
		self.sent += ok

	def _note_outage(self, error):
		with self._lock:
			now = time.time()
			if self._outage_since is None:
				self._outage_since = now
			if self._outage_logged or now - self._outage_since < OUTAGE_LOGGED_AFTER_S:
				return
			self._outage_logged = True
		self._logSys.warning(
			"syncfail2ban: cannot reach the syncfail2ban agent on %s (%s); jail %s keeps up to %d events and sends them when it answers (is the agent running? systemctl status syncfail2ban)",
			self.syncfail2ban_socket, error, self._jail.name, self.queue_size)

	def _note_back(self):
		"""After a batch the agent took: the outage ends once the queue is back below half."""
		if self._outage_since is None or len(self._queue) > self.queue_size // 2:
			return
		with self._lock:
			logged, dropped = self._outage_logged, self._dropped_in_outage
			self._outage_since = None
			self._outage_logged = False
			self._dropped_in_outage = 0
		if logged:
			self._logSys.notice(
				"syncfail2ban: the agent on %s takes events again; jail %s sent what it kept%s",
				self.syncfail2ban_socket, self._jail.name,
				"" if not dropped else (" and dropped %d event(s): run \"syncfail2ban-client -f %s\" to send its bans again" % (dropped, self._jail.name)))


def ban_address(entry):
	"""A ban's id (fail2ban's address, or any string fail2ban was given) as text, and whether it is an address."""
	# ntoa: str() of fail2ban's address works it out twice.
	address = getattr(entry, 'ntoa', entry)
	return address, isinstance(address, str) and ADDRESS.fullmatch(address) is not None


def agent_socket(settings):
	"""Where the agent listens, as it works it out: action_socket, else action.sock beside control_socket."""
	path = settings.get('action_socket', '').strip()
	if path:
		return path
	control = settings.get('control_socket', '').strip()
	return os.path.join(os.path.dirname(control), 'action.sock') if control else DEFAULT_SOCKET


def read_agent_config(path):
	"""The agent's general settings and its [jails] map (primary -> sync jail), read as the agent reads them."""
	with open(path, encoding='utf-8') as source:
		text = source.read()
	parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=('#', ';'), inline_comment_prefixes=None, default_section='\x00')
	parser.optionxform = str
	# Keys may stand at the top of the file, before any section (the README's minimal config).
	parser.read_string('[\x00top]\n' + text, source=path)
	settings = {}
	for section in ('\x00top', 'default'):
		if parser.has_section(section):
			settings.update(parser.items(section))
	jails = dict(parser.items('jails')) if parser.has_section('jails') else {}
	return settings, dict((key.strip(), value.strip()) for key, value in jails.items())
