/** One result of `syncfail2ban --check`: what was checked, and for a problem, how to fix it. */
export interface Finding {
  level: 'ok' | 'warn' | 'fail';
  subject: string;
  message: string;
  fix?: string;
}
