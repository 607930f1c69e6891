/*
 * TEST DOUBLE: a fake libamd_smi.so for AMD GPUs that cannot exist on the test machine.
 *
 * This is NOT AMD's library. It implements the AMD SMI entry points that
 * dgpu.node.gpu.amd calls through AMD's `amdsmi` Python binding, with the C layouts that
 * binding declares (amdsmi_wrapper.py of amdsmi 7.0.2: every struct below is `_pack_ = 1`),
 * and returns values the test chooses through environment variables. The binding binds
 * some 180 more symbols when it is imported: the test generates a stub for each of those
 * (answering AMDSMI_STATUS_NOT_SUPPORTED) beside this file. Built by the tests with
 * `gcc -shared -fPIC` as $ROCM_PATH/lib/libamd_smi.so, the first place the unmodified
 * binding looks, so the real binding code path runs.
 *
 * Environment (lists are ';'-separated, one entry per GPU, the last entry repeats):
 *   FAKEAMDSMI_COUNT           number of GPUs (default 1)
 *   FAKEAMDSMI_NAMES           market names (default "AMD Instinct MI300X")
 *   FAKEAMDSMI_UUIDS           device UUIDs (default fa4eamd0-0000-1000-8000-00000000000<i>)
 *   FAKEAMDSMI_VRAM_MB         total VRAM in MiB (default 196592)
 *   FAKEAMDSMI_POWER_CAP_W     power cap in watts (reported in microwatts; default 750)
 *   FAKEAMDSMI_DRIVER_VERSION  amdgpu's version (default "6.8.5")
 *   FAKEAMDSMI_RENDER          DRM render minor of each GPU (default 128 + i)
 *   FAKEAMDSMI_BUS             PCI bus number of each GPU (default 0x10 * (i + 1))
 *   FAKEAMDSMI_INIT_ERROR      an amdsmi_status_t for amdsmi_init to fail with
 *   FAKEAMDSMI_NOT_SUPPORTED   function names that answer AMDSMI_STATUS_NOT_SUPPORTED
 *   FAKEAMDSMI_CALL_LOG        file each call's name is appended to
 * Readings, looked up on every call so a test can change them while running:
 *   FAKEAMDSMI_GFX_ACTIVITY (percent), FAKEAMDSMI_VRAM_USED_MB, FAKEAMDSMI_POWER_W,
 *   FAKEAMDSMI_TEMP_EDGE_C, FAKEAMDSMI_TEMP_HOTSPOT_C
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AMDSMI_STATUS_SUCCESS 0
#define AMDSMI_STATUS_INVAL 1
#define AMDSMI_STATUS_NOT_SUPPORTED 2
#define AMDSMI_STATUS_NOT_INIT 32
#define AMDSMI_STATUS_INSUFFICIENT_SIZE 41
#define AMDSMI_MEM_TYPE_VRAM 0
#define AMDSMI_TEMPERATURE_TYPE_EDGE 0
#define AMDSMI_TEMPERATURE_TYPE_HOTSPOT 1
#define AMDSMI_TEMP_CURRENT 0
#define MAX_GPUS 32
#define MIB 1048576ULL

typedef uint32_t amdsmi_status_t;

#pragma pack(push, 1)
typedef struct {
    char market_name[256];
    uint32_t vendor_id;
    char vendor_name[256];
    uint32_t subvendor_id;
    uint64_t device_id;
    uint32_t rev_id;
    char asic_serial[256];
    uint32_t oam_id;
    uint32_t num_of_compute_units;
    uint8_t padding0[4];
    uint64_t target_graphics_version;
    uint32_t subsystem_id;
    uint32_t reserved[21];
} amdsmi_asic_info_t;

typedef struct {
    char driver_version[256];
    char driver_date[256];
    char driver_name[256];
} amdsmi_driver_info_t;

typedef struct {
    uint64_t power_cap;
    uint64_t default_power_cap;
    uint64_t dpm_cap;
    uint64_t min_power_cap;
    uint64_t max_power_cap;
    uint64_t reserved[3];
} amdsmi_power_cap_info_t;

typedef struct {
    uint32_t drm_render;
    uint32_t drm_card;
    uint32_t hsa_id;
    uint32_t hip_id;
    char hip_uuid[256];
} amdsmi_enumeration_info_t;

typedef struct {
    uint32_t gfx_activity;
    uint32_t umc_activity;
    uint32_t mm_activity;
    uint32_t reserved[13];
} amdsmi_engine_usage_t;

typedef struct {
    uint64_t socket_power;
    uint32_t current_socket_power;
    uint32_t average_socket_power;
    uint64_t gfx_voltage;
    uint64_t soc_voltage;
    uint64_t mem_voltage;
    uint32_t power_limit;
    uint8_t padding0[4];
    uint64_t reserved[18];
} amdsmi_power_info_t;
#pragma pack(pop)

/* One socket holding every GPU; handles point into these arrays. */
static int socket_token;
static unsigned int gpu_tokens[MAX_GPUS];
static unsigned int gpu_count;
static int initialised;

static void log_call(const char *name) {
    const char *path = getenv("FAKEAMDSMI_CALL_LOG");
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
    return strtoull(buf, NULL, 0);
}

static int not_supported(const char *function) {
    const char *list = getenv("FAKEAMDSMI_NOT_SUPPORTED");
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

/* The GPU index behind a handle, or -1. */
static int gpu_of(const void *handle) {
    const unsigned int *token = handle;
    if (token < gpu_tokens || token >= gpu_tokens + gpu_count) {
        return -1;
    }
    return (int)(token - gpu_tokens);
}

#define ENTER(name, handle, index)                           \
    log_call(name);                                          \
    if (!initialised) {                                      \
        return AMDSMI_STATUS_NOT_INIT;                       \
    }                                                        \
    int index = gpu_of(handle);                              \
    if (index < 0) {                                         \
        return AMDSMI_STATUS_INVAL;                          \
    }                                                        \
    if (not_supported(name)) {                               \
        return AMDSMI_STATUS_NOT_SUPPORTED;                  \
    }

amdsmi_status_t amdsmi_init(uint64_t flags) {
    (void)flags;
    log_call("amdsmi_init");
    const char *err = getenv("FAKEAMDSMI_INIT_ERROR");
    if (err != NULL && *err != '\0') {
        return (amdsmi_status_t)strtoul(err, NULL, 10);
    }
    const char *count = getenv("FAKEAMDSMI_COUNT");
    gpu_count = count != NULL ? (unsigned int)strtoul(count, NULL, 10) : 1;
    if (gpu_count > MAX_GPUS) {
        gpu_count = MAX_GPUS;
    }
    for (unsigned int i = 0; i < gpu_count; i++) {
        gpu_tokens[i] = i;
    }
    initialised++;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_shut_down(void) {
    log_call("amdsmi_shut_down");
    if (!initialised) {
        return AMDSMI_STATUS_NOT_INIT;
    }
    initialised--;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_socket_handles(uint32_t *count, void **handles) {
    log_call("amdsmi_get_socket_handles");
    if (!initialised) {
        return AMDSMI_STATUS_NOT_INIT;
    }
    if (count == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    if (handles == NULL) {
        *count = 1;
        return AMDSMI_STATUS_SUCCESS;
    }
    if (*count < 1) {
        return AMDSMI_STATUS_INSUFFICIENT_SIZE;
    }
    *count = 1;
    handles[0] = &socket_token;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_processor_handles(void *socket, uint32_t *count, void **handles) {
    log_call("amdsmi_get_processor_handles");
    if (!initialised) {
        return AMDSMI_STATUS_NOT_INIT;
    }
    if (socket != &socket_token || count == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    if (handles == NULL) {
        *count = gpu_count;
        return AMDSMI_STATUS_SUCCESS;
    }
    unsigned int n = *count < gpu_count ? *count : gpu_count;
    for (unsigned int i = 0; i < n; i++) {
        handles[i] = &gpu_tokens[i];
    }
    *count = n;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_asic_info(void *handle, amdsmi_asic_info_t *info) {
    ENTER("amdsmi_get_gpu_asic_info", handle, i);
    if (info == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    memset(info, 0, sizeof *info);
    char name[256] = "AMD Instinct MI300X";
    list_entry("FAKEAMDSMI_NAMES", (unsigned int)i, name, sizeof name);
    strcpy(info->market_name, name);
    info->vendor_id = 0x1002;
    strcpy(info->vendor_name, "Advanced Micro Devices Inc. [AMD/ATI]");
    info->device_id = 0x74a1;
    snprintf(info->asic_serial, sizeof info->asic_serial, "%016X", 0xFA4E0000u + (unsigned)i);
    info->num_of_compute_units = 304;
    info->target_graphics_version = 0x942;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_device_uuid(void *handle, uint32_t *length, char *uuid) {
    ENTER("amdsmi_get_gpu_device_uuid", handle, i);
    if (length == NULL || uuid == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    char buf[96];
    if (!list_entry("FAKEAMDSMI_UUIDS", (unsigned int)i, buf, sizeof buf)) {
        snprintf(buf, sizeof buf, "fa4eamd0-0000-1000-8000-%012u", (unsigned)i);
    }
    if (strlen(buf) + 1 > *length) {
        return AMDSMI_STATUS_INSUFFICIENT_SIZE;
    }
    strcpy(uuid, buf);
    *length = (uint32_t)strlen(buf) + 1;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_memory_total(void *handle, uint32_t type, uint64_t *total) {
    ENTER("amdsmi_get_gpu_memory_total", handle, i);
    if (total == NULL || type != AMDSMI_MEM_TYPE_VRAM) {
        return AMDSMI_STATUS_INVAL;
    }
    *total = list_number("FAKEAMDSMI_VRAM_MB", (unsigned int)i, 196592) * MIB;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_memory_usage(void *handle, uint32_t type, uint64_t *used) {
    ENTER("amdsmi_get_gpu_memory_usage", handle, i);
    if (used == NULL || type != AMDSMI_MEM_TYPE_VRAM) {
        return AMDSMI_STATUS_INVAL;
    }
    *used = list_number("FAKEAMDSMI_VRAM_USED_MB", (unsigned int)i, 0) * MIB;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_driver_info(void *handle, amdsmi_driver_info_t *info) {
    ENTER("amdsmi_get_gpu_driver_info", handle, i);
    if (info == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    memset(info, 0, sizeof *info);
    char version[256] = "6.8.5";
    list_entry("FAKEAMDSMI_DRIVER_VERSION", (unsigned int)i, version, sizeof version);
    strcpy(info->driver_version, version);
    strcpy(info->driver_date, "2015/01/01 00:00");
    strcpy(info->driver_name, "amdgpu");
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_power_cap_info(void *handle, uint32_t sensor,
                                          amdsmi_power_cap_info_t *info) {
    ENTER("amdsmi_get_power_cap_info", handle, i);
    if (info == NULL || sensor != 0) {
        return AMDSMI_STATUS_INVAL;
    }
    memset(info, 0, sizeof *info);
    uint64_t cap_uw = list_number("FAKEAMDSMI_POWER_CAP_W", (unsigned int)i, 750) * 1000000ULL;
    info->power_cap = cap_uw;
    info->default_power_cap = cap_uw;
    info->max_power_cap = cap_uw;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_enumeration_info(void *handle, amdsmi_enumeration_info_t *info) {
    ENTER("amdsmi_get_gpu_enumeration_info", handle, i);
    if (info == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    memset(info, 0, sizeof *info);
    info->drm_render = (uint32_t)list_number("FAKEAMDSMI_RENDER", (unsigned int)i, 128u + i);
    info->drm_card = (uint32_t)i;
    info->hsa_id = (uint32_t)i + 1;
    info->hip_id = (uint32_t)i;
    snprintf(info->hip_uuid, sizeof info->hip_uuid, "GPU-%016X", 0xFA4E0000u + (unsigned)i);
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_device_bdf(void *handle, uint64_t *bdf) {
    ENTER("amdsmi_get_gpu_device_bdf", handle, i);
    if (bdf == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    /* bit fields, low to high: function 3, device 5, bus 8, domain 48 */
    uint64_t bus = list_number("FAKEAMDSMI_BUS", (unsigned int)i, 0x10u * ((unsigned)i + 1));
    *bdf = (bus & 0xff) << 8;
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_gpu_activity(void *handle, amdsmi_engine_usage_t *usage) {
    ENTER("amdsmi_get_gpu_activity", handle, i);
    if (usage == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    memset(usage, 0, sizeof *usage);
    usage->gfx_activity = (uint32_t)list_number("FAKEAMDSMI_GFX_ACTIVITY", (unsigned int)i, 0);
    usage->umc_activity = usage->gfx_activity / 2;
    usage->mm_activity = 0xFFFF; /* what a board without a media engine reading says */
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_power_info(void *handle, amdsmi_power_info_t *info) {
    ENTER("amdsmi_get_power_info", handle, i);
    if (info == NULL) {
        return AMDSMI_STATUS_INVAL;
    }
    memset(info, 0, sizeof *info);
    uint32_t watts = (uint32_t)list_number("FAKEAMDSMI_POWER_W", (unsigned int)i, 140);
    info->socket_power = watts;
    info->current_socket_power = watts;
    info->average_socket_power = 0xFFFF; /* MI300 boards report only the current power */
    info->power_limit = (uint32_t)list_number("FAKEAMDSMI_POWER_CAP_W", (unsigned int)i, 750);
    return AMDSMI_STATUS_SUCCESS;
}

amdsmi_status_t amdsmi_get_temp_metric(void *handle, uint32_t sensor, uint32_t metric,
                                       int64_t *value) {
    ENTER("amdsmi_get_temp_metric", handle, i);
    if (value == NULL || metric != AMDSMI_TEMP_CURRENT) {
        return AMDSMI_STATUS_INVAL;
    }
    const char *var;
    if (sensor == AMDSMI_TEMPERATURE_TYPE_EDGE) {
        var = "FAKEAMDSMI_TEMP_EDGE_C";
    } else if (sensor == AMDSMI_TEMPERATURE_TYPE_HOTSPOT) {
        var = "FAKEAMDSMI_TEMP_HOTSPOT_C";
    } else {
        return AMDSMI_STATUS_NOT_SUPPORTED;
    }
    char buf[32];
    if (!list_entry(var, (unsigned int)i, buf, sizeof buf)) {
        return AMDSMI_STATUS_NOT_SUPPORTED;
    }
    *value = strtoll(buf, NULL, 10);
    return AMDSMI_STATUS_SUCCESS;
}
