-- A server's display name ("GitHub MCP"), shown in the UI and returned by the API; the URL
-- segment (`name`, the path of /mcp/{name}) is derived from it when an admin gives only a
-- display name. Null: the name is shown.
alter table mcp_servers add column display_name text;

-- The audit log now also holds sign-ins, sign-outs and OAuth consents, filtered by kind.
create index audit_log_action on audit_log (action);
