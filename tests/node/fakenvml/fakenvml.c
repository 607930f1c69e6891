/*
 * TEST DOUBLE: a fake libnvidia-ml.so.1 for a GPU that cannot exist on the test machine.
 *
 * This is NOT NVIDIA's library. It implements only the NVML entry points that
 * dgpu.node.gpu.nvml calls through pynvml, with the C signatures of nvml.h, and returns
 * values the test chooses through environment variables. Built by the tests with
 * `gcc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1` and found by pynvml's ordinary
 * CDLL("libnvidia-ml.so.1") through LD_LIBRARY_PATH, so the real pynvml code path runs.
 *
 * Environment (lists are ';'-separated, one entry per GPU, the last entry repeats):
 *   FAKENVML_COUNT            number of GPUs (default 1)
 *   FAKENVML_NAMES            device names   (default "NVIDIA GeForce RTX 4090")
 *   FAKENVML_UUIDS            device UUIDs   (default GPU-fa4e0000-0000-0000-0000-00000000000<i>)
 *   FAKENVML_MEM_TOTAL_MB     total memory   (default 24564)
 *   FAKENVML_POWER_LIMIT_MW   enforced power limit in milliwatts (default 450000)
 *   FAKENVML_DRIVER_VERSION   the driver's version string (default "550.54.15")
 *   FAKENVML_INIT_ERROR       an NVML return code for nvmlInit to fail with
 *   FAKENVML_NOT_SUPPORTED    function names that answer NVML_ERROR_NOT_SUPPORTED
 *   FAKENVML_CALL_LOG         file each call's name is appended to
 * Readings, looked up on every call so a test can change them while running:
 *   FAKENVML_UTIL (percent), FAKENVML_MEM_USED_MB, FAKENVML_POWER_MW, FAKENVML_TEMP_C
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_UNKNOWN 999
#define NVML_TEMPERATURE_GPU 0
#define MAX_GPUS 64
#define MIB 1048576ULL

typedef int nvmlReturn_t;

typedef struct nvmlDevice_st {
    unsigned int index;
} *nvmlDevice_t;

typedef struct {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
} nvmlMemory_t;

typedef struct {
    unsigned int gpu;
    unsigned int memory;
} nvmlUtilization_t;

static struct nvmlDevice_st devices[MAX_GPUS];
static unsigned int device_count;
static int initialised;

static void log_call(const char *name) {
    const char *path = getenv("FAKENVML_CALL_LOG");
    if (path == NULL || *path == '\0') {
        return;
    }
    FILE *f = fopen(path, "a");
    if (f != NULL) {
        fprintf(f, "%s\n", name);
        fclose(f);
    }
}

/* Entry `index` of the ';'-separated list in variable `var` (the last one repeats). */
static int list_entry(const char *var, unsigned int index, char *out, size_t size) {
    const char *list = getenv(var);
    if (list == NULL || *list == '\0') {
        return 0;
    }
    const char *start = list;
    for (unsigned int i = 0; i < index; i++) {
        const char *sep = strchr(start, ';');
        if (sep == NULL) {
            break;
        }
        start = sep + 1;
    }
    size_t len = strcspn(start, ";");
    if (len >= size) {
        len = size - 1;
    }
    memcpy(out, start, len);
    out[len] = '\0';
    return 1;
}

static unsigned long long list_number(const char *var, unsigned int index,
                                      unsigned long long fallback) {
    char buf[64];
    if (!list_entry(var, index, buf, sizeof buf)) {
        return fallback;
    }
    return strtoull(buf, NULL, 10);
}

static int not_supported(const char *function) {
    const char *list = getenv("FAKENVML_NOT_SUPPORTED");
    if (list == NULL) {
        return 0;
    }
    size_t n = strlen(function);
    for (const char *p = strstr(list, function); p != NULL; p = strstr(p + 1, function)) {
        int starts = p == list || p[-1] == ';' || p[-1] == ',';
        int ends = p[n] == '\0' || p[n] == ';' || p[n] == ',';
        if (starts && ends) {
            return 1;
        }
    }
    return 0;
}

static nvmlReturn_t check_device(nvmlDevice_t device) {
    if (!initialised) {
        return NVML_ERROR_UNINITIALIZED;
    }
    if (device == NULL || device < devices || device >= devices + device_count) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    return NVML_SUCCESS;
}

#define ENTER(name, device)                                  \
    log_call(name);                                          \
    do {                                                     \
        nvmlReturn_t rc_ = check_device(device);             \
        if (rc_ != NVML_SUCCESS) {                           \
            return rc_;                                      \
        }                                                    \
        if (not_supported(name)) {                           \
            return NVML_ERROR_NOT_SUPPORTED;                 \
        }                                                    \
    } while (0)

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    log_call("nvmlInitWithFlags");
    const char *err = getenv("FAKENVML_INIT_ERROR");
    if (err != NULL && *err != '\0') {
        return (nvmlReturn_t)strtol(err, NULL, 10);
    }
    const char *count = getenv("FAKENVML_COUNT");
    device_count = count != NULL ? (unsigned int)strtoul(count, NULL, 10) : 1;
    if (device_count > MAX_GPUS) {
        device_count = MAX_GPUS;
    }
    for (unsigned int i = 0; i < device_count; i++) {
        devices[i].index = i;
    }
    initialised++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    log_call("nvmlShutdown");
    if (!initialised) {
        return NVML_ERROR_UNINITIALIZED;
    }
    initialised--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    default: return "Unknown Error (fake NVML)";
    }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    log_call("nvmlDeviceGetCount_v2");
    if (!initialised) {
        return NVML_ERROR_UNINITIALIZED;
    }
    if (count == NULL) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    *count = device_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    log_call("nvmlDeviceGetHandleByIndex_v2");
    if (!initialised) {
        return NVML_ERROR_UNINITIALIZED;
    }
    if (device == NULL || index >= device_count) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    *device = &devices[index];
    return NVML_SUCCESS;
}

static nvmlReturn_t copy_string(const char *value, char *out, unsigned int length) {
    if (out == NULL) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    if (strlen(value) + 1 > length) {
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    strcpy(out, value);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    log_call("nvmlSystemGetDriverVersion");
    if (!initialised) {
        return NVML_ERROR_UNINITIALIZED;
    }
    const char *value = getenv("FAKENVML_DRIVER_VERSION");
    return copy_string(value != NULL ? value : "550.54.15", version, length);
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    ENTER("nvmlDeviceGetName", device);
    char buf[96] = "NVIDIA GeForce RTX 4090";
    list_entry("FAKENVML_NAMES", device->index, buf, sizeof buf);
    return copy_string(buf, name, length);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    ENTER("nvmlDeviceGetUUID", device);
    char buf[96];
    if (!list_entry("FAKENVML_UUIDS", device->index, buf, sizeof buf)) {
        snprintf(buf, sizeof buf, "GPU-fa4e0000-0000-0000-0000-%012u", device->index);
    }
    return copy_string(buf, uuid, length);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    ENTER("nvmlDeviceGetMemoryInfo", device);
    if (memory == NULL) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    memory->total = list_number("FAKENVML_MEM_TOTAL_MB", device->index, 24564) * MIB;
    memory->used = list_number("FAKENVML_MEM_USED_MB", device->index, 0) * MIB;
    memory->free = memory->used < memory->total ? memory->total - memory->used : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *util) {
    ENTER("nvmlDeviceGetUtilizationRates", device);
    if (util == NULL) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    util->gpu = (unsigned int)list_number("FAKENVML_UTIL", device->index, 0);
    util->memory = util->gpu / 2;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    ENTER("nvmlDeviceGetPowerUsage", device);
    if (power == NULL) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    *power = (unsigned int)list_number("FAKENVML_POWER_MW", device->index, 20000);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit) {
    ENTER("nvmlDeviceGetEnforcedPowerLimit", device);
    if (limit == NULL) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    *limit = (unsigned int)list_number("FAKENVML_POWER_LIMIT_MW", device->index, 450000);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
    ENTER("nvmlDeviceGetTemperature", device);
    if (temp == NULL || sensor != NVML_TEMPERATURE_GPU) {
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    *temp = (unsigned int)list_number("FAKENVML_TEMP_C", device->index, 35);
    return NVML_SUCCESS;
}
