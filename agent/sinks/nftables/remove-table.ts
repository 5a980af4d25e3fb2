import { DEFAULT_CONTROL_SOCKET, loadConfig } from '../../../src/config.js';
import { requestStatus } from '../../../src/control-protocol.js';
import { Nft, NftError } from './nft.js';
import { TABLE, TABLE_SPEC } from './nft-script.js';

/**
 * `syncfail2ban --remove-nft-table`: deletes the agent's nftables table (its bans are then
 * no longer enforced there). Refused while an agent answering on the config's control
 * socket runs the nftables sink: it would build the table again within seconds. Returns
 * the exit code.
 */
export async function removeNftTable(file: string, out: NodeJS.WritableStream = process.stdout, nft = new Nft()): Promise<number> {
  if (await runningSink(controlSocketOf(file))) {
    out.write(`the agent is running with nft_sync = true and would build table inet ${TABLE} again; stop it first ("systemctl stop syncfail2ban"), or set nft_sync = false and reload it ("systemctl reload syncfail2ban")\n`);
    return 1;
  }
  try {
    if ((await nft.listJson(TABLE_SPEC, true)) === undefined) {
      out.write(`table inet ${TABLE} does not exist: nothing to remove\n`);
      return 0;
    }
    await nft.run(['delete', ...TABLE_SPEC]);
  } catch (error) {
    if (!(error instanceof NftError)) throw error;
    out.write(`cannot remove table inet ${TABLE}: ${error.message}; fix: ${error.fix}\n`);
    return 1;
  }
  out.write(`removed table inet ${TABLE}: the fleet's bans are no longer enforced in nftables\n`);
  return 0;
}

/** The config's control socket; the default when the config cannot be read (removal must work then too). */
function controlSocketOf(file: string): string {
  try {
    return loadConfig(file).controlSocket;
  } catch {
    return DEFAULT_CONTROL_SOCKET;
  }
}

/** Whether an agent answers on the control socket with an nftables sink among its parts. */
async function runningSink(controlSocket: string): Promise<boolean> {
  try {
    const { status } = await requestStatus(controlSocket, 5_000);
    return status.parts.some((part) => part.kind === 'sink' && part.name === 'nftables');
  } catch {
    return false;
  }
}
