export function formatBuildInfo(env) {
  const mode = env.MODE || "unknown";
  const label = env.VITE_BUILD_LABEL || "no label";
  return `mode: ${mode} · label: ${label}`;
}
