// The signature verifiers docs/webhooks.md gives receivers, read from the
// page itself, so the tests check exactly what the docs tell people to run.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const PAGE = resolve(import.meta.dirname, '../../docs/webhooks.md');

/** The first fenced code block in `lang` on the webhooks page. */
export function docBlock(lang) {
  const page = readFileSync(PAGE, 'utf8');
  const m = page.match(new RegExp('```' + lang + '\\n([\\s\\S]*?)\\n```'));
  if (!m) throw new Error(`docs/webhooks.md has no ${lang} block`);
  return m[1];
}

/** The Node `verifySignature` from the docs, as a function. */
export async function nodeVerifier() {
  const source = docBlock('js');
  const mod = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
  return mod.verifySignature;
}
