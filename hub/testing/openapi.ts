import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv2020) => Ajv2020;

export const OPENAPI_PATH = fileURLToPath(new URL('../../docs/openapi.yaml', import.meta.url));

/**
 * Validates real response bodies against the response schemas of docs/openapi.yaml (OpenAPI 3.1
 * schemas are JSON Schema 2020-12). The whole document is one ajv schema, so `$ref`s resolve as
 * they do for any OpenAPI tool.
 */
export function openApiValidator(): (method: string, path: string, status: number, body: unknown, mediaType?: string) => string | undefined {
  const doc = parse(readFileSync(OPENAPI_PATH, 'utf8'));
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(doc, 'openapi.json');
  const esc = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');
  return (method, path, status, body, mediaType = 'application/json') => {
    const ref = `openapi.json#/paths/${esc(path)}/${method}/responses/${status}/content/${esc(mediaType)}/schema`;
    // Error responses are `$ref`s to components/responses/Error, whose schema is components/schemas/Error.
    const v = ajv.getSchema(ref) ?? (status >= 400 && doc.paths[path]?.[method]?.responses?.[status] ? ajv.getSchema('openapi.json#/components/schemas/Error') : undefined);
    if (!v) return `no schema in docs/openapi.yaml for ${method.toUpperCase()} ${path} ${status} ${mediaType}`;
    return v(body) ? undefined : `${method.toUpperCase()} ${path} ${status}: ${ajv.errorsText(v.errors)}`;
  };
}
