/**
 * @p2p/perftest: perftest's ib_write_bw, ib_read_bw, ib_write_lat and
 * ib_read_lat over the model's NICs. Its flags and defaults
 * (perftest_parameters.c), RC QP pairs between two processes of the model,
 * the bandwidth and latency runs over packed WQEs and completion streams,
 * the figures perftest reports and its output, and each side's memory by
 * name: host memory, or a device's BAR exported by vfio-pci as a dma-buf.
 */
export { TEST_NAMES, type TestName, type TestKind, testKind, isTestName, type RawParams, type PerfParams, perfParams, allSizes, DEF_SIZE_BW, DEF_SIZE_LAT, DEF_ITERS, DEF_ITERS_WB, MIN_ITER, MAX_SIZE, MAX_QPS } from './params';
export { percentile, latencyStats, type LatencyStats, peakRate, type CompletionMark } from './stats';
export { PERF_ACCESS, type RdmaEnd, type MemoryRegion, QpConnection } from './connection';
export { type RunLength, type RunPlan, type BwResult, type LatResult, queueDepths, runBw, runLat } from './measure';
export { Endpoint, type EndpointOptions } from './endpoint';
export { type MemorySpec, type NamedFunction, type VfioAccess, type OpenMemory, memoryNames, memoryByName, openMemory, DEVICE_MEMORY_BAR, HOST_IOVA, BAR_IOVA } from './memory';
export { RESULT_LINE, type SideInfo, type RunInfo, banner, resultHeader, resultRow, resultJson, runJson } from './report';
export { type PerfNic, type PerfTarget, type PerfRun, type PerfReport, runPerf } from './run';
