declare module 'node-gyp-build' {
  /** Loads the addon built for this platform from `dir` (build/Release or prebuilds/). */
  function nodeGypBuild(dir: string): unknown;
  namespace nodeGypBuild {
    /** The path of the addon nodeGypBuild(dir) would load. */
    function resolve(dir: string): string;
  }
  export = nodeGypBuild;
}
