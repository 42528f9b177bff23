import type { ClientContext, Transport } from './context.ts';

export interface CommandRequest {
  type: string;
  topic: string;
  data: unknown;
  key?: string;
}

/** What the client gets in `ok` once the command is durably recorded. */
export interface CommandResult {
  eventId: string;
  position: string;
  duplicate?: boolean;
}

/** Records a tenant command durably, then publishes it. Throws HubError with a wire code. */
export interface CommandHandler {
  execute(ctx: ClientContext, req: CommandRequest, transport: Transport): Promise<CommandResult>;
}
