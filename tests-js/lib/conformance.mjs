// What the JS suites receive, checked against the documents consultd
// serves: every REST answer against /openapi.json (its path, method and
// status), every push and every ack against /asyncapi.json. A route, an
// event or a field the documents do not describe is a violation; the
// suites fail on any (lib/clients.mjs checks after each file).
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const state = {
  loaded: null,
  violations: [],
  counts: { rest: 0, push: 0, ack: 0 },
};

/** Rewrites a document's local `$ref`s to point into the schema `id`. */
function rebase(node, id) {
  if (Array.isArray(node)) return node.map((n) => rebase(n, id));
  if (node && typeof node === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(node)) {
      out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `${id}${v}` : rebase(v, id);
    }
    return out;
  }
  return node;
}

/** Fetches and compiles both documents (once per process). */
export async function loadDocuments(baseUrl) {
  if (state.loaded) return state.loaded;
  const [openapi, asyncapi] = await Promise.all(
    ['/openapi.json', '/asyncapi.json'].map(async (p) => (await fetch(`${baseUrl}${p}`)).json()),
  );
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema({ $id: 'openapi', ...rebase({ components: openapi.components }, 'openapi') });
  ajv.addSchema({ $id: 'asyncapi', ...rebase({ components: asyncapi.components }, 'asyncapi') });

  const routes = [];
  for (const [template, item] of Object.entries(openapi.paths)) {
    const re = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
    for (const [method, op] of Object.entries(item)) {
      const responses = {};
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        const schema = r.content?.['application/json']?.schema;
        responses[status] = schema ? ajv.compile(rebase(schema, 'openapi')) : null;
      }
      routes.push({ re, template, method: method.toUpperCase(), responses });
    }
  }
  const messages = { server: new Map(), ack: new Map() };
  for (const [key, m] of Object.entries(asyncapi.components.messages)) {
    const kind = key.split('.')[0];
    if (messages[kind]) messages[kind].set(m.name, ajv.compile(rebase(m.payload, 'asyncapi')));
  }
  state.loaded = { routes, messages };
  return state.loaded;
}

function violation(what) {
  state.violations.push(what);
}

const describeErrors = (v) => JSON.stringify(v.errors?.slice(0, 3));

/** A REST answer: `path` may carry a query string. */
export function checkRest(method, path, status, body) {
  if (!state.loaded) return;
  const bare = path.split('?')[0];
  const route = state.loaded.routes.find((r) => r.method === method && r.re.test(bare));
  if (!route) return violation(`${method} ${bare} is not in /openapi.json`);
  const validate = route.responses[String(status)] ?? route.responses[`${String(status)[0]}XX`];
  if (validate === undefined) return violation(`${method} ${route.template} answered ${status}, not in /openapi.json`);
  state.counts.rest += 1;
  if (validate && !validate(body)) violation(`${method} ${route.template} ${status}: ${describeErrors(validate)} in ${JSON.stringify(body).slice(0, 300)}`);
}

/** A server push. */
export function checkPush(name, payload) {
  if (!state.loaded) return;
  const validate = state.loaded.messages.server.get(name);
  if (!validate) return violation(`the push ${name} is not in /asyncapi.json`);
  state.counts.push += 1;
  if (!validate(payload)) violation(`push ${name}: ${describeErrors(validate)} in ${JSON.stringify(payload).slice(0, 300)}`);
}

/** An ack to a client event. */
export function checkAck(name, ack) {
  if (!state.loaded) return;
  const validate = state.loaded.messages.ack.get(name);
  if (!validate) {
    // An event the document does not name must be refused as unknown
    // (CONTRACT §2); answering it any other way is an undocumented event.
    state.counts.ack += 1;
    if (ack?.ok === false && ack.error?.code === 'bad_request') return;
    return violation(`the client event ${name} is not in /asyncapi.json, yet answered ${JSON.stringify(ack)}`);
  }
  state.counts.ack += 1;
  if (!validate(ack)) violation(`ack of ${name}: ${describeErrors(validate)} in ${JSON.stringify(ack).slice(0, 300)}`);
}

/** What was checked, and what did not conform. */
export function conformance() {
  return { counts: { ...state.counts }, violations: [...state.violations] };
}
