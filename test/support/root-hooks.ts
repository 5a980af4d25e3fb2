import { stopAllFail2ban } from './fail2ban-server.js';

/** Loaded by .mocharc: whatever a failing test left running is stopped at the end of the run. */
export const mochaHooks = {
  async afterAll(): Promise<void> {
    await stopAllFail2ban();
  },
};
