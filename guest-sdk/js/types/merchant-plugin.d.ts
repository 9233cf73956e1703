// world hookhost:plugin/merchant-plugin@0.1.0
export type * as HookhostPluginConfig010 from './interfaces/hookhost-plugin-config.js'; // import hookhost:plugin/config@0.1.0
export type * as HookhostPluginHttp010 from './interfaces/hookhost-plugin-http.js'; // import hookhost:plugin/http@0.1.0
export type * as HookhostPluginKv010 from './interfaces/hookhost-plugin-kv.js'; // import hookhost:plugin/kv@0.1.0
export type * as HookhostPluginLog010 from './interfaces/hookhost-plugin-log.js'; // import hookhost:plugin/log@0.1.0
export type * as HookhostPluginTypes010 from './interfaces/hookhost-plugin-types.js'; // import hookhost:plugin/types@0.1.0
export * as handler from './interfaces/hookhost-plugin-handler.js'; // export hookhost:plugin/handler@0.1.0
