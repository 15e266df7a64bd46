declare module 'node-gyp-build' {
  /** Loads the addon built for this platform from `dir` (build/Release or prebuilds/). */
  function nodeGypBuild(dir: string): unknown;
  export = nodeGypBuild;
}
