export { createApp, type AppOptions } from "./app.js";
export { startServer, type RunningServer, type StartServerOptions } from "./start-server.js";
export { loadServerOptions, ServerConfigError, type ServerOptions } from "./server-config.js";
export { GatewayListenError } from "./gateway/ollama-listener.js";
export { checkListenerSafety, UnsafeListenerError } from "./security/listener-safety.js";
export { listenersOf } from "./start-server.js";
