export { bootstrap, roles, type BootstrapOptions, type Bootstrapped, type Role } from "./bootstrap.js";
