// The agent's nft helper process (see NftHelper): it starts nft for the agent, so that the
// agent itself never forks. It takes requests only over the IPC channel of the agent that
// started it, and ends with that channel.
import { runProcess } from './nft-process.js';
import type { HelperReply, HelperRequest } from './nft-helper.js';

const send = process.send?.bind(process);
if (!send) {
  process.stderr.write('the nft helper is started by the syncfail2ban agent, not by hand\n');
  process.exit(2);
}

// The agent stopped or died: what still runs goes with it (a transaction cut short changes nothing).
const agentGone = new AbortController();
process.on('disconnect', () => agentGone.abort());

process.on('message', (request: HelperRequest) => {
  void runProcess(request.command, request.args, request.source, request.env, request.timeoutMs, agentGone.signal).then((run) => {
    if (process.connected) send({ id: request.id, run } satisfies HelperReply);
  });
});
