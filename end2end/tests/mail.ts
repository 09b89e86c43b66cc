// The mails the servers sent, as the SMTP server of the run received them (scripts/e2e.sh starts
// scripts/smtp-sink.py and names its folder in MAIL_DIR). The sink writes each message as
// NNNNNN.eml and then its envelope as NNNNNN.json, each atomically: a .json seen means its
// whole message is there.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { simpleParser } from 'mailparser';

export interface Mail {
  /** Its number in the sink's folder: later mails have higher ones. */
  number: number;
  /** The envelope's recipients (RCPT TO), lower-cased. */
  to: string[];
  /** The envelope's sender (MAIL FROM). */
  from: string;
  subject: string;
  text: string;
  html: string;
  /** Every http(s) address in the text part, in order. */
  links: string[];
  /** The link the mail exists for (one with a token), if it has one. */
  link?: string;
}

export function mailDir(): string {
  const dir = process.env.MAIL_DIR;
  if (!dir) {
    throw new Error('MAIL_DIR is not set: run the browser tests through `make e2e` (scripts/e2e.sh)');
  }
  return dir;
}

function numbers(): number[] {
  return fs
    .readdirSync(mailDir())
    .filter((name) => /^\d+\.json$/.test(name))
    .map((name) => parseInt(name, 10))
    .sort((a, b) => a - b);
}

/** The number of the newest mail so far (0 before the first): `after` of a later wait. */
export function lastMail(): number {
  return numbers().at(-1) ?? 0;
}

const parsed = new Map<number, Promise<Mail>>();

function read(number: number): Promise<Mail> {
  let mail = parsed.get(number);
  if (!mail) {
    mail = (async () => {
      const dir = mailDir();
      const name = String(number).padStart(6, '0');
      const envelope = JSON.parse(fs.readFileSync(path.join(dir, `${name}.json`), 'utf8'));
      const message = await simpleParser(fs.readFileSync(path.join(dir, envelope.eml)));
      const text = message.text ?? '';
      const links = text.match(/https?:\/\/[^\s<>"]+/g) ?? [];
      return {
        number,
        to: (envelope.rcpt_tos as string[]).map((a) => a.toLowerCase()),
        from: envelope.mail_from,
        subject: message.subject ?? '',
        text,
        html: typeof message.html === 'string' ? message.html : '',
        links,
        link: links.find((l) => /[?&]token=/.test(l)),
      };
    })();
    parsed.set(number, mail);
  }
  return mail;
}

/** Every mail to `address` so far, oldest first. */
export async function mailsTo(address: string): Promise<Mail[]> {
  const to = address.toLowerCase();
  const all = await Promise.all(numbers().map(read));
  return all.filter((m) => m.to.includes(to));
}

/** Every mail numbered above `after`, oldest first. */
export async function mailsSince(after: number): Promise<Mail[]> {
  return Promise.all(numbers().filter((n) => n > after).map(read));
}

/** Waits for the newest mail to `address` (whose subject matches `subject`, if given; numbered
 * above `after`, if given) and returns it. */
export async function waitForMail(
  address: string,
  { subject, after = 0, timeout = 15_000 }: { subject?: RegExp; after?: number; timeout?: number } = {},
): Promise<Mail> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const found = (await mailsTo(address)).filter(
      (m) => m.number > after && (!subject || subject.test(m.subject)),
    );
    if (found.length > 0) return found[found.length - 1];
    if (Date.now() > deadline) {
      const seen = (await mailsTo(address)).map((m) => `#${m.number} ${m.subject}`);
      throw new Error(
        `no mail to ${address}${subject ? ` with a subject matching ${subject}` : ''} after #${after} ` +
          `within ${timeout} ms (to that address: ${seen.length ? seen.join('; ') : 'none'})`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The token link of the newest mail to `address` matching `subject`. */
export async function linkIn(address: string, subject: RegExp, after = 0): Promise<string> {
  const mail = await waitForMail(address, { subject, after });
  if (!mail.link) throw new Error(`the mail "${mail.subject}" to ${address} has no link with a token:\n${mail.text}`);
  return mail.link;
}

/** An address no other test (or earlier run) uses, in the sink's reserved test domain. */
export function uniqueAddress(prefix = 'm'): string {
  const rand = Math.random().toString(36).slice(2, 8);
  return `${prefix}.${Date.now().toString(36)}.${rand}@example.test`;
}
