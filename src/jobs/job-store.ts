import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { ProgressEvent } from "../events/progress-event.js";
import type { JobEndEvent, JobRecord, JobStatus, StoredEvent, StoredResult } from "./job-record.js";

/**
 * Jobs and their events in SQLite (DATA_DIR/jobs.sqlite). Synchronous on purpose
 * (better-sqlite3): an event is on disk before anyone is told of it, so a stream that
 * reads the past and then follows live cannot miss or repeat one (see JobFeed).
 *
 * One process owns a DATA_DIR (the GPU owner lock), so a job still `running` when the
 * store opens belongs to a process that died: open() leaves it to markInterrupted().
 */

const schema = `
CREATE TABLE IF NOT EXISTS vram_needs (
  key         TEXT PRIMARY KEY,
  mib         INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  id          TEXT PRIMARY KEY,
  mode        TEXT NOT NULL,
  status      TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  finished_at INTEGER,
  phase       TEXT NOT NULL,
  progress    REAL NOT NULL,
  message     TEXT NOT NULL,
  request     TEXT NOT NULL,
  result      TEXT,
  error       TEXT,
  warnings    TEXT NOT NULL,
  file_tag    TEXT NOT NULL,
  last_seq    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_file_tag ON jobs (file_tag);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE TABLE IF NOT EXISTS job_events (
  job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  seq    INTEGER NOT NULL,
  kind   TEXT NOT NULL,
  data   TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
`;

interface JobRow {
  id: string;
  mode: string;
  status: string;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
  phase: string;
  progress: number;
  message: string;
  request: string;
  result: string | null;
  error: string | null;
  warnings: string;
  file_tag: string;
  last_seq: number;
}

export interface NewJob {
  id: string;
  mode: JobRecord["mode"];
  request: Record<string, unknown>;
  fileTag: string;
  createdAt: number;
}

export interface JobEnding {
  status: Exclude<JobStatus, "running">;
  result?: StoredResult | undefined;
  error?: JobRecord["error"];
  warnings: string[];
  at: number;
}

export interface ListOptions {
  limit: number;
  /** Only jobs created before this one (paging: the last id of the previous page). */
  before?: string | undefined;
}

export class JobStore {
  readonly #db: Database.Database;
  readonly #statements;

  private constructor(db: Database.Database) {
    this.#db = db;
    this.#statements = {
      insert: db.prepare(
        `INSERT INTO jobs (id, mode, status, created_at, updated_at, phase, progress, message, request, warnings, file_tag)
         VALUES (@id, @mode, 'running', @createdAt, @createdAt, 'queued', 0, 'Queued', @request, '[]', @fileTag)`,
      ),
      get: db.prepare<[string], JobRow>(`SELECT * FROM jobs WHERE id = ?`),
      appendEvent: db.prepare(`INSERT INTO job_events (job_id, seq, kind, data) VALUES (?, ?, ?, ?)`),
      touch: db.prepare(
        `UPDATE jobs SET phase = @phase, progress = @progress, message = @message, updated_at = @at, last_seq = @seq WHERE id = @id`,
      ),
      bumpSeq: db.prepare(`UPDATE jobs SET last_seq = @seq, updated_at = @at WHERE id = @id`),
      finish: db.prepare(
        `UPDATE jobs SET status = @status, finished_at = @at, updated_at = @at, result = @result, error = @error,
           warnings = @warnings, phase = @phase, progress = @progress, message = @message
         WHERE id = @id AND status = 'running'`,
      ),
      vramNeeds: db.prepare<[], { key: string; mib: number }>(`SELECT key, mib FROM vram_needs`),
      saveVramNeed: db.prepare(
        `INSERT INTO vram_needs (key, mib, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET mib = excluded.mib, updated_at = excluded.updated_at`,
      ),
      dropPreviews: db.prepare(`DELETE FROM job_events WHERE job_id = ? AND kind = 'preview'`),
      eventsAfter: db.prepare<[string, number], { seq: number; data: string }>(
        `SELECT seq, data FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq`,
      ),
      running: db.prepare<[], JobRow>(`SELECT * FROM jobs WHERE status = 'running'`),
      byTag: db.prepare<[string], { status: string }>(`SELECT status FROM jobs WHERE file_tag = ?`),
      list: db.prepare<[number], JobRow>(`SELECT * FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?`),
      listBefore: db.prepare<[number, number, string, number], JobRow>(
        `SELECT * FROM jobs WHERE created_at < ? OR (created_at = ? AND id < ?) ORDER BY created_at DESC, id DESC LIMIT ?`,
      ),
      pruneOlder: db.prepare(`DELETE FROM jobs WHERE status != 'running' AND created_at < ?`),
      pruneBeyond: db.prepare(
        `DELETE FROM jobs WHERE status != 'running' AND id NOT IN (SELECT id FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?)`,
      ),
    };
  }

  /** Opens (and creates) the store; `:memory:` for a throwaway one. */
  static open(file: string): JobStore {
    if (file !== ":memory:") fs.mkdirSync(path.dirname(file), { recursive: true });
    const db = new Database(file);
    // WAL: readers (a replaying stream) never block the writer (a running job).
    db.pragma("journal_mode = WAL");
    // Durable enough for a job log (a power cut may lose the last events), and fast.
    db.pragma("synchronous = NORMAL");
    db.pragma("foreign_keys = ON");
    db.pragma("busy_timeout = 5000");
    db.exec(schema);
    return new JobStore(db);
  }

  create(job: NewJob): void {
    this.#statements.insert.run({ ...job, request: JSON.stringify(job.request) });
  }

  get(id: string): JobRecord | undefined {
    const row = this.#statements.get.get(id);
    return row && fromRow(row);
  }

  /** Newest first. */
  list(options: ListOptions): JobRecord[] {
    const limit = Math.max(1, Math.min(options.limit, 1000));
    const before = options.before === undefined ? undefined : this.#statements.get.get(options.before);
    if (options.before !== undefined && !before) return [];
    const rows = before
      ? this.#statements.listBefore.all(before.created_at, before.created_at, before.id, limit)
      : this.#statements.list.all(limit);
    return rows.map(fromRow);
  }

  /** Stores a progress event and what it says of the job's progress, in one transaction. */
  appendEvent(id: string, seq: number, event: ProgressEvent): void {
    this.#transaction(() => {
      this.#statements.appendEvent.run(id, seq, event.kind, JSON.stringify(event));
      // A preview or a warning says nothing new of where the job stands.
      if (event.kind === "status" || event.kind === "refined" || event.kind === "image" || event.kind === "reply") {
        this.#statements.touch.run({ id, seq, phase: event.phase, progress: event.progress, message: event.message, at: event.at });
      } else {
        this.#statements.bumpSeq.run({ id, seq, at: event.at });
      }
    });
  }

  /**
   * The job's answer: final status, result or error, and the `end` event that closes its
   * stream. Previews go: the images supersede them, and they are most of a job's bytes.
   * Returns false when the job had already ended (nothing is written then).
   */
  finish(id: string, seq: number, ending: JobEnding): boolean {
    return this.#transaction(() => {
      const endPhase = ending.status === "succeeded" ? "complete" : "error";
      const message = endMessage(ending);
      const changed = this.#statements.finish.run({
        id,
        status: ending.status,
        at: ending.at,
        result: ending.result === undefined ? null : JSON.stringify(ending.result),
        error: ending.error === undefined ? null : JSON.stringify(ending.error),
        warnings: JSON.stringify(ending.warnings),
        phase: endPhase,
        progress: 100,
        message,
      }).changes;
      if (changed === 0) return false;
      const end: JobEndEvent = { kind: "end", status: ending.status, at: ending.at };
      this.#statements.appendEvent.run(id, seq, "end", JSON.stringify(end));
      this.#statements.bumpSeq.run({ id, seq, at: ending.at });
      this.#statements.dropPreviews.run(id);
      return true;
    });
  }

  eventsAfter(id: string, afterSeq: number): StoredEvent[] {
    return this.#statements.eventsAfter.all(id, afterSeq).map((row) => ({ seq: row.seq, event: JSON.parse(row.data) }));
  }

  /**
   * Jobs left `running` by a process that died: failed with code `interrupted`, their
   * streams ended. Returns them (their files are the caller's to remove).
   */
  markInterrupted(at = Date.now()): JobRecord[] {
    const stranded = this.#statements.running.all().map(fromRow);
    for (const job of stranded) {
      this.finish(job.id, job.lastSeq + 1, {
        status: "failed",
        error: { code: "interrupted", message: "Interrupted: DiffuGen stopped while this job was running" },
        warnings: job.warnings,
        at,
      });
    }
    return stranded.map((job) => this.get(job.id)!);
  }

  /**
   * May a file carrying this tag be served? Not when it belongs to a job that did not
   * succeed (a partial batch, a job interrupted by a crash); files no job knows (written
   * by `diffugen generate`) may.
   */
  fileTagServable(tag: string): boolean {
    const row = this.#statements.byTag.get(tag);
    return row === undefined || row.status === "succeeded";
  }

  /** Deletes finished jobs (and their events) older than maxAgeMs or beyond the newest maxCount; 0 = no limit. */
  prune(limits: { maxAgeMs: number; maxCount: number }, now = Date.now()): number {
    return this.#transaction(() => {
      let removed = 0;
      if (limits.maxAgeMs > 0) removed += this.#statements.pruneOlder.run(now - limits.maxAgeMs).changes;
      if (limits.maxCount > 0) removed += this.#statements.pruneBeyond.run(limits.maxCount).changes;
      return removed;
    });
  }

  /** The peak VRAM learned per drawing shape (src/diffusion/vram-needs.ts), kept across restarts. */
  loadVramNeeds(): Record<string, number> {
    return Object.fromEntries(this.#statements.vramNeeds.all().map((row) => [row.key, row.mib]));
  }

  saveVramNeed(key: string, mib: number): void {
    this.#statements.saveVramNeed.run(key, mib, Date.now());
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  #transaction<T>(run: () => T): T {
    return this.#db.transaction(run)();
  }
}

function endMessage(ending: JobEnding): string {
  switch (ending.status) {
    case "succeeded":
      return ending.result?.kind === "reply" ? "Answered" : "Done";
    case "cancelled":
      return ending.error?.message ?? "Cancelled";
    case "failed":
      return ending.error?.message ?? "Failed";
  }
}

function fromRow(row: JobRow): JobRecord {
  return {
    id: row.id,
    mode: row.mode as JobRecord["mode"],
    status: row.status as JobStatus,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at ?? undefined,
    phase: row.phase as JobRecord["phase"],
    progress: row.progress,
    message: row.message,
    request: JSON.parse(row.request),
    result: row.result === null ? undefined : JSON.parse(row.result),
    error: row.error === null ? undefined : JSON.parse(row.error),
    warnings: JSON.parse(row.warnings),
    fileTag: row.file_tag,
    lastSeq: row.last_seq,
  };
}
