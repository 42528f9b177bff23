/**
 * CSV rendering of audit entries (pure), with csv-stringify doing the quoting (RFC 4180).
 *
 * Formula injection (OWASP "CSV Injection"): a spreadsheet runs a cell that starts with `=`, `+`,
 * `-` or `@`, and some also treat a leading TAB or CR that way. Such a cell gets a leading `'`, which
 * spreadsheets show as text; the quoting then keeps separators and quotes inside the cell. The
 * export is for humans opening it in a spreadsheet, so the prefix is the right trade; a consumer
 * that needs the exact bytes uses the JSON API.
 */
import { stringify } from 'csv-stringify/sync';
import type { AuditEntry } from './readModels.ts';

export const AUDIT_CSV_COLUMNS = ['recordedAt', 'id', 'globalPosition', 'type', 'actor', 'session', 'topic', 'outcome', 'correlationId', 'node', 'data'] as const;

const FORMULA_START = /^[=+\-@\t\r]/;

/** The cell as a spreadsheet will show it, never as a formula. */
export function escapeFormula(cell: string): string {
  return FORMULA_START.test(cell) ? `'${cell}` : cell;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  return escapeFormula(typeof v === 'string' ? v : JSON.stringify(v));
}

/** The header line. */
export function auditCsvHeader(): string {
  return stringify([AUDIT_CSV_COLUMNS as unknown as string[]], { record_delimiter: 'windows' });
}

/** CSV lines for `rows` (no header), every cell formula-escaped and quoted as needed. */
export function auditCsvRows(rows: AuditEntry[]): string {
  const records = rows.map((r) => AUDIT_CSV_COLUMNS.map((c) => cell(r[c])));
  return stringify(records, { record_delimiter: 'windows', quoted_match: /^'/ });
}
